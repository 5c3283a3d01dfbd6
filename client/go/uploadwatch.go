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
	"errors"
	"io"

	pb "github.com/uploadwatch/uploadwatch/gen/go/metrika/offline_conversions/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
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
