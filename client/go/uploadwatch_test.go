// Tests of the Go client against a running uploadwatch server on the Metrica
// simulator's demo world (scripts/lib/client_tests.sh starts one):
//
//	UPLOADWATCH_ADDR=127.0.0.1:PORT go test -v .
package uploadwatch_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadwatch/uploadwatch/client/go"
	pb "github.com/uploadwatch/uploadwatch/gen/go/metrika/offline_conversions/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const counter = uploadwatch.DemoCounter

// Live demo uploads have ids from 101 up; a new one starts every 30 s (3 s at
// --demo_speed=10), each done 90 s (9 s) after it starts.
func isLive(id int64) bool { return id > 100 }

func connect(t *testing.T) (context.Context, pb.UploadingServiceClient) {
	t.Helper()
	addr := os.Getenv("UPLOADWATCH_ADDR")
	if addr == "" {
		t.Skip("UPLOADWATCH_ADDR is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchDeadline()+10*time.Second)
	t.Cleanup(cancel)
	conn, client, err := uploadwatch.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return ctx, client
}

func watchDeadline() time.Duration {
	if s, err := strconv.ParseFloat(os.Getenv("UPLOADWATCH_WATCH_DEADLINE"), 64); err == nil {
		return time.Duration(s * float64(time.Second))
	}
	return 170 * time.Second
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

// watchAll collects a whole stream; the error is the stream's end (nil for OK).
func watchAll(ctx context.Context, client pb.UploadingServiceClient, id int64) ([]*pb.WatchUploadingResponse, error) {
	var msgs []*pb.WatchUploadingResponse
	err := uploadwatch.Watch(ctx, client, counter, id, func(m *pb.WatchUploadingResponse) error {
		msgs = append(msgs, m)
		return nil
	})
	return msgs, err
}

func TestList(t *testing.T) {
	ctx, client := connect(t)
	resp, err := client.ListUploadings(ctx, &pb.ListUploadingsRequest{CounterId: counter})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, u := range resp.GetUploadings() {
		ids = append(ids, u.GetId())
		if u.GetType() != pb.Uploading_BASIC {
			t.Errorf("uploading %d: type %v, want BASIC", u.GetId(), u.GetType())
		}
	}
	var live []int64
	for _, id := range ids {
		if isLive(id) {
			live = append(live, id)
		}
	}
	if len(live) < 3 {
		t.Fatalf("live uploads %v, want at least 3", live)
	}
	for i := 1; i < len(live); i++ {
		if live[i] >= live[i-1] {
			t.Fatalf("live uploads not newest first: %v", live)
		}
	}
	if want := append(append([]int64{}, live...), 19, 18, 17, 16, 13, 12); !reflect.DeepEqual(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	page, err := client.ListUploadings(ctx, &pb.ListUploadingsRequest{CounterId: counter, Limit: 2, Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A new live upload may start between the calls: compare with both lists.
	later, err := client.ListUploadings(ctx, &pb.ListUploadingsRequest{CounterId: counter})
	if err != nil {
		t.Fatal(err)
	}
	matches := func(want []int64) bool {
		return len(page.GetUploadings()) == 2 && page.Uploadings[0].GetId() == want[1] &&
			page.Uploadings[1].GetId() == want[2]
	}
	laterIDs := []int64{}
	for _, u := range later.GetUploadings() {
		laterIDs = append(laterIDs, u.GetId())
	}
	if !matches(ids) && !matches(laterIDs) {
		t.Errorf("limit 2 offset 1 gave %v", page.GetUploadings())
	}
	calls, err := client.ListUploadings(ctx, &pb.ListUploadingsRequest{CounterId: counter, Type: pb.Uploading_CALLS})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls.GetUploadings()) != 1 || calls.Uploadings[0].GetId() != 14 || calls.Uploadings[0].GetStaticCallsQuantity() != 204 {
		t.Errorf("CALLS gave %v", calls.GetUploadings())
	}
}

func TestGetFields(t *testing.T) {
	ctx, client := connect(t)
	demoToken := os.Getenv("UPLOADWATCH_DEMO_TOKEN")
	if demoToken == "" {
		demoToken = "demo-token"
	}
	resp, err := client.GetUploading(uploadwatch.WithToken(ctx, demoToken),
		&pb.GetUploadingRequest{CounterId: counter, UploadingId: 12})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetUploading()
	created, _ := time.Parse(time.RFC3339, "2022-12-29T18:02:01Z")
	if !got.GetCreateTime().AsTime().Equal(created) {
		t.Errorf("create_time %v, want %v", got.GetCreateTime().AsTime(), created)
	}
	got.CreateTime = nil
	want := &pb.Uploading{
		Id: 12, SourceQuantity: 1500, LineQuantity: 1480, Comment: "CRM export, December",
		ClientIdType: pb.Uploading_CLIENT_ID, Status: pb.Uploading_PROCESSED, Type: pb.Uploading_BASIC,
		GoalNotFoundQuantity: 2, UserNotFoundQuantity: 86, LinkedQuantity: 1392,
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func pickMovingUploading(ctx context.Context, t *testing.T, client pb.UploadingServiceClient) int64 {
	if s := os.Getenv("UPLOADWATCH_WATCH_ID"); s != "" {
		id, _ := strconv.ParseInt(s, 10, 64)
		return id
	}
	resp, err := client.ListUploadings(ctx, &pb.ListUploadingsRequest{CounterId: counter})
	if err != nil {
		t.Fatal(err)
	}
	var best *pb.Uploading
	for _, u := range resp.GetUploadings() {
		if isLive(u.GetId()) && !uploadwatch.IsTerminal(u.GetStatus()) &&
			(best == nil || u.GetStatus() > best.GetStatus()) {
			best = u
		}
	}
	if best == nil {
		t.Fatalf("no moving uploading under way: %v", resp.GetUploadings())
	}
	return best.GetId()
}

func TestWatchFollowsToTerminal(t *testing.T) {
	ctx, client := connect(t)
	ctx, cancel := context.WithTimeout(ctx, watchDeadline())
	defer cancel()
	var id int64
	var msgs []*pb.WatchUploadingResponse
	for attempt := 0; attempt < 2; attempt++ {
		id = pickMovingUploading(ctx, t, client)
		var err error
		if msgs, err = watchAll(ctx, client, id); err != nil {
			t.Fatalf("watch %d ended with %v after %d messages", id, err, len(msgs))
		}
		if len(msgs) > 1 {
			break // else it ended between the List and the Watch
		}
	}
	if len(msgs) < 2 {
		t.Fatalf("uploading %d did not move: %v", id, msgs)
	}
	for i, m := range msgs {
		if m.GetUploading().GetId() != id {
			t.Errorf("message %d is about uploading %d", i, m.GetUploading().GetId())
		}
		last := i == len(msgs)-1
		if m.GetTerminal() != last || uploadwatch.IsTerminal(m.GetUploading().GetStatus()) != last {
			t.Errorf("message %d of %d: terminal=%v status=%v", i+1, len(msgs), m.GetTerminal(), m.GetUploading().GetStatus())
		}
		if i > 0 {
			if m.GetVersion() <= msgs[i-1].GetVersion() {
				t.Errorf("version %d after %d", m.GetVersion(), msgs[i-1].GetVersion())
			}
			if proto.Equal(m.GetUploading(), msgs[i-1].GetUploading()) {
				t.Errorf("message %d duplicates the one before", i+1)
			}
		}
	}
}

func TestWatchTerminalUploadingGivesOneMessage(t *testing.T) {
	ctx, client := connect(t)
	msgs, err := watchAll(ctx, client, 13)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || !msgs[0].GetTerminal() || msgs[0].GetUploading().GetStatus() != pb.Uploading_LINKAGE_FAILURE {
		t.Fatalf("got %v, want one terminal LINKAGE_FAILURE message", msgs)
	}
}

func TestInvalidArgument(t *testing.T) {
	ctx, client := connect(t)
	_, err := client.GetUploading(ctx, &pb.GetUploadingRequest{CounterId: 0, UploadingId: 12})
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(status.Convert(err).Message(), "counter_id") {
		t.Errorf("message %q does not name counter_id", status.Convert(err).Message())
	}
	_, err = watchAll(ctx, client, 0)
	wantCode(t, err, codes.InvalidArgument)
	_, err = client.ListUploadings(ctx, &pb.ListUploadingsRequest{CounterId: counter, Limit: 10001})
	wantCode(t, err, codes.InvalidArgument)
}

func TestWrongTokenIsUnauthenticated(t *testing.T) {
	ctx, client := connect(t)
	ctx = uploadwatch.WithToken(ctx, "nope")
	_, err := client.GetUploading(ctx, &pb.GetUploadingRequest{CounterId: counter, UploadingId: 12})
	wantCode(t, err, codes.Unauthenticated)
	_, err = watchAll(ctx, client, 12)
	wantCode(t, err, codes.Unauthenticated)
}

func TestNotFoundCarriesErrorInfo(t *testing.T) {
	ctx, client := connect(t)
	_, err := client.GetUploading(ctx, &pb.GetUploadingRequest{CounterId: counter, UploadingId: 999999})
	wantCode(t, err, codes.NotFound)
	info := uploadwatch.ErrorInfo(err)
	if info == nil {
		t.Fatalf("no google.rpc.ErrorInfo in %v (details %v)", err, status.Convert(err).Details())
	}
	if info.GetReason() != "NOT_FOUND" || info.GetDomain() == "" {
		t.Errorf("ErrorInfo %v, want reason NOT_FOUND and a domain", info)
	}
}

func TestWatchCommand(t *testing.T) {
	connect(t)
	bin := os.Getenv("UPLOADWATCH_GO_WATCH_BIN") // prebuilt by client_tests.sh
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "uploadwatch-watch")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/uploadwatch-watch").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	run := func(id string) (int, string, string) {
		var stdout, stderr strings.Builder
		cmd := exec.Command(bin, "-server", os.Getenv("UPLOADWATCH_ADDR"), strconv.Itoa(counter), id)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode(), stdout.String(), stderr.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, stdout.String(), stderr.String()
	}
	if code, out, errOut := run("15"); code != 0 || !strings.Contains(out, "PROCESSED") || !strings.Contains(out, "terminal=true") {
		t.Errorf("watch 15: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := run("999999"); code != int(codes.NotFound) || !strings.Contains(errOut, "NOT_FOUND") {
		t.Errorf("watch 999999: exit %d, stderr %q", code, errOut)
	}
}
