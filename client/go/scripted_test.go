// Tests of the Go client's counter watch (resume, reset) against a real gRPC
// server on loopback that answers WatchUploadings from scripts, and of its
// TLS options against the real uploadwatch server serving TLS and mTLS
// (scripts/lib/client_tests.sh starts those and sets UPLOADWATCH_TLS_ADDR,
// UPLOADWATCH_MTLS_ADDR and UPLOADWATCH_CERTS).
package uploadwatch_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uploadwatch/uploadwatch/client/go"
	pb "github.com/uploadwatch/uploadwatch/gen/go/metrika/offline_conversions/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// script is one WatchUploadings call: its messages, then its end (nil: OK;
// errHang: the stream stays open until the client leaves).
type script struct {
	messages []*pb.WatchUploadingsResponse
	end      error
}

type scriptedService struct {
	pb.UnimplementedUploadingServiceServer
	scripts  []script
	release  chan struct{} // closed when the test ends: frees hanging streams
	mu       sync.Mutex
	requests []*pb.WatchUploadingsRequest
}

func (s *scriptedService) WatchUploadings(req *pb.WatchUploadingsRequest, stream pb.UploadingService_WatchUploadingsServer) error {
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, proto.Clone(req).(*pb.WatchUploadingsRequest))
	s.mu.Unlock()
	if n >= len(s.scripts) {
		return status.Error(codes.Internal, "no script left")
	}
	for _, m := range s.scripts[n].messages {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	if s.scripts[n].end == errHang {
		// Not on the stream's context: the server's copy of the deadline
		// must not race the client's own with a status of its own.
		<-s.release
		return status.Error(codes.Canceled, "released")
	}
	return s.scripts[n].end
}

func (s *scriptedService) tokensSent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.requests {
		out = append(out, r.GetResumeToken())
	}
	return out
}

// startScripted serves scripts on a free loopback port; a client to it.
func startScripted(t *testing.T, scripts ...script) (*scriptedService, pb.UploadingServiceClient) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	service := &scriptedService{scripts: scripts, release: make(chan struct{})}
	server := grpc.NewServer()
	pb.RegisterUploadingServiceServer(server, service)
	go server.Serve(lis)
	t.Cleanup(server.Stop)
	t.Cleanup(func() { close(service.release) }) // runs before Stop
	conn, client, err := uploadwatch.Dial(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return service, client
}

type ev struct {
	kind   pb.UploadingEvent_Type
	id     int64
	status pb.Uploading_Status
}

func msg(token string, synced, reset bool, events ...ev) *pb.WatchUploadingsResponse {
	m := &pb.WatchUploadingsResponse{Synced: synced, Reset_: reset, ResumeToken: token}
	for _, e := range events {
		m.Events = append(m.Events, &pb.UploadingEvent{Type: e.kind, Uploading: &pb.Uploading{Id: e.id, Status: e.status}})
	}
	return m
}

var (
	rotated = status.Error(codes.Unavailable, "maximum stream lifetime")
	errHang = fmt.Errorf("hang")
)

func watchCounterAll(ctx context.Context, client pb.UploadingServiceClient, req *pb.WatchUploadingsRequest) ([]string, error) {
	var tokens []string
	err := uploadwatch.WatchCounter(ctx, client, req, func(m *pb.WatchUploadingsResponse) error {
		tokens = append(tokens, m.GetResumeToken())
		return nil
	})
	return tokens, err
}

func TestCounterWatchResumesWithTheLastTokenOnUnavailable(t *testing.T) {
	service, client := startScripted(t,
		script{[]*pb.WatchUploadingsResponse{
			msg("t1", false, false, ev{pb.UploadingEvent_ADDED, 5, pb.Uploading_PREPARED}),
			msg("t2", true, false, ev{pb.UploadingEvent_ADDED, 6, pb.Uploading_MATCHED}),
			msg("t3", false, false), // a bookmark's token counts too
		}, rotated},
		script{[]*pb.WatchUploadingsResponse{msg("t4", true, false)}, rotated},
		script{[]*pb.WatchUploadingsResponse{
			msg("t5", true, false, ev{pb.UploadingEvent_MODIFIED, 5, pb.Uploading_UPLOADED}),
		}, status.Error(codes.PermissionDenied, "access revoked")})
	tokens, err := watchCounterAll(context.Background(), client,
		&pb.WatchUploadingsRequest{CounterId: 1, Type: pb.Uploading_CALLS})
	wantCode(t, err, codes.PermissionDenied)
	if want := []string{"t1", "t2", "t3", "t4", "t5"}; !reflect.DeepEqual(tokens, want) {
		t.Errorf("tokens %v, want %v", tokens, want)
	}
	if got, want := service.tokensSent(), []string{"", "t3", "t4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("resumed with %v, want %v", got, want)
	}
	for _, r := range service.requests {
		if r.GetCounterId() != 1 || r.GetType() != pb.Uploading_CALLS {
			t.Errorf("request %v", r)
		}
	}
}

func TestCounterWatchStartsFromTheCallersToken(t *testing.T) {
	service, client := startScripted(t, script{nil, status.Error(codes.NotFound, "no counter 1")})
	tokens, err := watchCounterAll(context.Background(), client,
		&pb.WatchUploadingsRequest{CounterId: 1, ResumeToken: "saved"})
	wantCode(t, err, codes.NotFound)
	if len(tokens) != 0 || !reflect.DeepEqual(service.tokensSent(), []string{"saved"}) {
		t.Errorf("tokens %v, sent %v", tokens, service.tokensSent())
	}
}

func TestCounterWatchResumeThatFailsBeforeAnAnswerEnds(t *testing.T) {
	service, client := startScripted(t,
		script{[]*pb.WatchUploadingsResponse{msg("t1", true, false)}, rotated},
		script{nil, status.Error(codes.Unavailable, "shutting down")})
	tokens, err := watchCounterAll(context.Background(), client, &pb.WatchUploadingsRequest{CounterId: 1})
	wantCode(t, err, codes.Unavailable)
	if status.Convert(err).Message() != "shutting down" || len(tokens) != 1 || len(service.tokensSent()) != 2 {
		t.Errorf("err %v, tokens %v, sent %v", err, tokens, service.tokensSent())
	}
}

func TestCounterWatchUnavailableBeforeAnyAnswerIsNotRetried(t *testing.T) {
	service, client := startScripted(t, script{nil, status.Error(codes.Unavailable, "shutting down")})
	_, err := watchCounterAll(context.Background(), client, &pb.WatchUploadingsRequest{CounterId: 1})
	wantCode(t, err, codes.Unavailable)
	if n := len(service.tokensSent()); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

func TestCounterWatchEndingOkIsAnError(t *testing.T) {
	_, client := startScripted(t, script{[]*pb.WatchUploadingsResponse{msg("t1", true, false)}, nil})
	_, err := watchCounterAll(context.Background(), client, &pb.WatchUploadingsRequest{CounterId: 1})
	if err == nil || !strings.Contains(err.Error(), "never ends by itself") {
		t.Fatalf("got %v", err)
	}
}

func TestCounterWatchIsBoundedByTheContext(t *testing.T) {
	service, client := startScripted(t,
		script{[]*pb.WatchUploadingsResponse{msg("t1", true, false)}, rotated},
		script{[]*pb.WatchUploadingsResponse{msg("t2", false, false)}, errHang})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	tokens, err := watchCounterAll(ctx, client, &pb.WatchUploadingsRequest{CounterId: 1})
	wantCode(t, err, codes.DeadlineExceeded)
	if !reflect.DeepEqual(tokens, []string{"t1", "t2"}) || len(service.tokensSent()) != 2 {
		t.Errorf("tokens %v, %d calls", tokens, len(service.tokensSent()))
	}
}

func TestCounterViewDropsWhatItHeldOnAReset(t *testing.T) {
	_, client := startScripted(t,
		script{[]*pb.WatchUploadingsResponse{
			msg("t1", true, false, ev{pb.UploadingEvent_ADDED, 5, pb.Uploading_PREPARED},
				ev{pb.UploadingEvent_ADDED, 6, pb.Uploading_PROCESSED}),
			msg("t2", false, false, ev{pb.UploadingEvent_MODIFIED, 5, pb.Uploading_UPLOADED}),
		}, rotated},
		script{[]*pb.WatchUploadingsResponse{
			msg("t3", false, true),
			msg("t4", true, false, ev{pb.UploadingEvent_ADDED, 7, pb.Uploading_PREPARED}),
		}, status.Error(codes.PermissionDenied, "revoked")})
	var view uploadwatch.CounterView
	var states []string
	err := uploadwatch.WatchCounter(context.Background(), client, &pb.WatchUploadingsRequest{CounterId: 1},
		func(m *pb.WatchUploadingsResponse) error {
			view.Apply(m)
			state := fmt.Sprint(view.Synced())
			for _, u := range view.NewestFirst() {
				state += fmt.Sprintf(" %d:%v", u.GetId(), u.GetStatus())
			}
			states = append(states, state)
			return nil
		})
	wantCode(t, err, codes.PermissionDenied)
	want := []string{"true 6:PROCESSED 5:PREPARED", "true 6:PROCESSED 5:UPLOADED", "false", "true 7:PREPARED"}
	if !reflect.DeepEqual(states, want) {
		t.Errorf("states %q, want %q", states, want)
	}
}

// --- TLS to the real server ---

func tlsEnv(t *testing.T) (certs, tlsAddr, mtlsAddr string) {
	certs, tlsAddr, mtlsAddr = os.Getenv("UPLOADWATCH_CERTS"), os.Getenv("UPLOADWATCH_TLS_ADDR"), os.Getenv("UPLOADWATCH_MTLS_ADDR")
	if certs == "" || tlsAddr == "" || mtlsAddr == "" {
		t.Skip("UPLOADWATCH_CERTS/UPLOADWATCH_TLS_ADDR/UPLOADWATCH_MTLS_ADDR not set")
	}
	return
}

// getCode is the code of a GetUploading of demo uploading 12 over o.
func getCode(t *testing.T, addr string, o uploadwatch.TLSOptions) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, client, err := uploadwatch.DialTLS(ctx, addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := client.GetUploading(ctx, &pb.GetUploadingRequest{CounterId: counter, UploadingId: 12})
	if err == nil && resp.GetUploading().GetId() != 12 {
		t.Errorf("got %v", resp)
	}
	return status.Code(err)
}

func TestTLSWithTheCAFile(t *testing.T) {
	certs, tlsAddr, _ := tlsEnv(t)
	if c := getCode(t, tlsAddr, uploadwatch.TLSOptions{CAFile: filepath.Join(certs, "ca.pem")}); c != codes.OK {
		t.Errorf("got %v", c)
	}
}

func TestTLSRefusesAnUntrustedServerAndPlaintext(t *testing.T) {
	certs, tlsAddr, _ := tlsEnv(t)
	if c := getCode(t, tlsAddr, uploadwatch.TLSOptions{CAFile: filepath.Join(certs, "stranger.pem")}); c != codes.Unavailable {
		t.Errorf("stranger CA: got %v", c)
	}
	if c := getCode(t, tlsAddr, uploadwatch.TLSOptions{}); c != codes.Unavailable {
		t.Errorf("plaintext: got %v", c)
	}
}

func TestMTLSNeedsAClientCertificateFromTheCA(t *testing.T) {
	certs, _, mtlsAddr := tlsEnv(t)
	f := func(name string) string { return filepath.Join(certs, name) }
	if c := getCode(t, mtlsAddr, uploadwatch.TLSOptions{CAFile: f("ca.pem"), CertFile: f("client.pem"), KeyFile: f("client.key")}); c != codes.OK {
		t.Errorf("client cert: got %v", c)
	}
	if c := getCode(t, mtlsAddr, uploadwatch.TLSOptions{CAFile: f("ca.pem")}); c != codes.Unavailable {
		t.Errorf("no client cert: got %v", c)
	}
	if c := getCode(t, mtlsAddr, uploadwatch.TLSOptions{CAFile: f("ca.pem"), CertFile: f("stranger.pem"), KeyFile: f("stranger.key")}); c != codes.Unavailable {
		t.Errorf("stranger's cert: got %v", c)
	}
}

func TestTLSBadFilesAreErrorsBeforeDialling(t *testing.T) {
	certs, tlsAddr, _ := tlsEnv(t)
	if _, _, err := uploadwatch.DialTLS(context.Background(), tlsAddr, uploadwatch.TLSOptions{CertFile: filepath.Join(certs, "client.pem")}); err == nil {
		t.Error("half a client certificate was accepted")
	}
	_, _, err := uploadwatch.DialTLS(context.Background(), tlsAddr, uploadwatch.TLSOptions{CAFile: filepath.Join(certs, "nope.pem")})
	if err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Errorf("missing CA file: %v", err)
	}
}
