// Package uploadwatch is a small Go client helper for the uploadwatch gRPC
// API (the status of Yandex Metrica offline-conversion uploads).
//
// The stubs are generated from proto/metrika/offline_conversions/v1 by
// protoc-gen-go and protoc-gen-go-grpc into the import path the .proto names,
// github.com/uploadwatch/uploadwatch/gen/go/metrika/offline_conversions/v1;
// client/go/gopath.sh builds a GOPATH with them (see client/README.md).
package uploadwatch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	pb "github.com/uploadwatch/uploadwatch/gen/go/metrika/offline_conversions/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DemoCounter is the simulator's (and Metrica's documentation's) counter.
const DemoCounter = 2215573

// Dial connects to an uploadwatch server without TLS.
func Dial(ctx context.Context, address string) (*grpc.ClientConn, pb.UploadingServiceClient, error) {
	conn, err := grpc.DialContext(ctx, address, grpc.WithInsecure())
	if err != nil {
		return nil, nil, err
	}
	return conn, pb.NewUploadingServiceClient(conn), nil
}

// TLSOptions say how to reach a server that serves TLS (uploading_server's
// --tls_cert_file) or mutual TLS (--tls_client_ca_file).
type TLSOptions struct {
	// TLS is implied by any of the files.
	TLS bool
	// CAFile is a PEM bundle of the CAs to trust; empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// mutual TLS: both or neither.
	CertFile, KeyFile string
}

// UsesTLS tells whether o asks for TLS at all.
func (o TLSOptions) UsesTLS() bool {
	return o.TLS || o.CAFile != "" || o.CertFile != "" || o.KeyFile != ""
}

// TransportCredentials returns TLS credentials for o (nil, nil when o asks
// for no TLS). The server's host name is checked against the dialled address.
func TransportCredentials(o TLSOptions) (credentials.TransportCredentials, error) {
	if !o.UsesTLS() {
		return nil, nil
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("a client certificate needs its key: give CertFile and KeyFile")
	}
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read CA file: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in CA file %s", o.CAFile)
		}
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot load the client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(config), nil
}

// DialTLS connects to an uploadwatch server as o says (plaintext when o asks
// for no TLS). A bad file is an error before anything is dialled.
func DialTLS(ctx context.Context, address string, o TLSOptions) (*grpc.ClientConn, pb.UploadingServiceClient, error) {
	creds, err := TransportCredentials(o)
	if err != nil {
		return nil, nil, err
	}
	option := grpc.WithInsecure()
	if creds != nil {
		option = grpc.WithTransportCredentials(creds)
	}
	conn, err := grpc.DialContext(ctx, address, option)
	if err != nil {
		return nil, nil, err
	}
	return conn, pb.NewUploadingServiceClient(conn), nil
}

// WithToken returns a context whose calls carry `authorization: OAuth <token>`,
// which wins over the server's own token. An empty token changes nothing.
func WithToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "OAuth "+token)
}

// IsTerminal tells whether a status never changes again.
func IsTerminal(s pb.Uploading_Status) bool {
	return s == pb.Uploading_PROCESSED || s == pb.Uploading_LINKAGE_FAILURE
}

// Watch calls fn with every state of the uploading until its terminal status;
// nil then. Any other end of the stream (or fn's error) is returned.
func Watch(ctx context.Context, client pb.UploadingServiceClient, counterID int32, uploadingID int64,
	fn func(*pb.WatchUploadingResponse) error) error {
	stream, err := client.WatchUploading(ctx, &pb.WatchUploadingRequest{CounterId: counterID, UploadingId: uploadingID})
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
}

// WatchCounter follows a whole counter (WatchUploadings): fn gets every
// message, bookmarks and resets included (feed them to a CounterView).
// req.ResumeToken may carry a token saved earlier. The stream never ends by
// itself, so neither does this: it returns the error that ended the watch
// (ctx's deadline, a permanent error, or fn's error); a stream that ends OK
// breaks the contract and is an error too.
//
// When a stream that had answered ends with UNAVAILABLE (the server's stream
// lifetime, a restart), this resumes at once with the last ResumeToken
// received: fn sees one stream. A resumed stream that fails before its first
// message ends the watch, so a server that is gone is not retried forever.
func WatchCounter(ctx context.Context, client pb.UploadingServiceClient, req *pb.WatchUploadingsRequest,
	fn func(*pb.WatchUploadingsResponse) error) error {
	next := &pb.WatchUploadingsRequest{CounterId: req.GetCounterId(), Type: req.GetType(), ResumeToken: req.GetResumeToken()}
	for {
		answered, err := watchCounterOnce(ctx, client, next, fn)
		if status.Code(err) == codes.Unavailable && answered {
			continue
		}
		return err
	}
}

// watchCounterOnce runs one stream; it tells whether a message came, and
// moves next.ResumeToken along.
func watchCounterOnce(ctx context.Context, client pb.UploadingServiceClient, next *pb.WatchUploadingsRequest,
	fn func(*pb.WatchUploadingsResponse) error) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when fn fails
	stream, err := client.WatchUploadings(ctx, next)
	if err != nil {
		return false, err
	}
	answered := false
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return answered, errors.New("the counter watch ended without an error; it never ends by itself")
		}
		if err != nil {
			return answered, err
		}
		answered = true
		if msg.GetResumeToken() != "" {
			next.ResumeToken = msg.GetResumeToken()
		}
		if err := fn(msg); err != nil {
			return false, err // fn's error is final, whatever it is
		}
	}
}

// CounterView is what a counter watch's client holds: the latest state of
// each uploading by id. Apply every message, in order. Not safe for
// concurrent use.
type CounterView struct {
	uploadings map[int64]*pb.Uploading
	synced     bool
}

// Apply takes one message: a reset drops everything held first (a fresh
// snapshot follows); each event then stores its uploading.
func (v *CounterView) Apply(m *pb.WatchUploadingsResponse) {
	if v.uploadings == nil || m.GetReset_() {
		v.uploadings = map[int64]*pb.Uploading{}
		v.synced = false
	}
	for _, e := range m.GetEvents() {
		v.uploadings[e.GetUploading().GetId()] = e.GetUploading()
	}
	if m.GetSynced() {
		v.synced = true
	}
}

// Synced tells whether a synced message came since the start or the last
// reset: the view then holds the whole counter.
func (v *CounterView) Synced() bool { return v.synced }

// Len is the number of uploadings held.
func (v *CounterView) Len() int { return len(v.uploadings) }

// NewestFirst returns every uploading held, highest id first.
func (v *CounterView) NewestFirst() []*pb.Uploading {
	out := make([]*pb.Uploading, 0, len(v.uploadings))
	for _, u := range v.uploadings {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() > out[j].GetId() })
	return out
}

// ErrorInfo returns the google.rpc.ErrorInfo detail of a failed call (decoded
// from the grpc-status-details-bin trailer), or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
