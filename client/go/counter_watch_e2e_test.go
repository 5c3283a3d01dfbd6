//go:build counterwatch_e2e
// +build counterwatch_e2e

// END-TO-END cases of the Go counter watch against the real server on the
// simulator's demo world. NOT YET RUNNABLE: the server side of
// WatchUploadings is on another branch. Built only with
// `-tags counterwatch_e2e` (scripts/lib/client_tests.sh adds it when
// UPLOADWATCH_E2E_COUNTER_WATCH=1), so nothing is skipped otherwise.
package uploadwatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/uploadwatch/uploadwatch/client/go"
	pb "github.com/uploadwatch/uploadwatch/gen/go/metrika/offline_conversions/v1"
	"google.golang.org/grpc/codes"
)

var errEnough = errors.New("enough")

func TestE2ECounterWatchSnapshotThenLiveEvents(t *testing.T) {
	ctx, client := connect(t)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var view uploadwatch.CounterView
	added, modified := 0, 0
	err := uploadwatch.WatchCounter(ctx, client, &pb.WatchUploadingsRequest{CounterId: counter},
		func(m *pb.WatchUploadingsResponse) error {
			for _, e := range m.GetEvents() {
				switch {
				case !view.Synced() && e.GetType() != pb.UploadingEvent_ADDED:
					t.Errorf("snapshot event %v", e)
				case view.Synced() && e.GetType() == pb.UploadingEvent_ADDED:
					added++
				case view.Synced():
					modified++
				}
			}
			view.Apply(m)
			if m.GetResumeToken() == "" {
				t.Error("a message without a resume token")
			}
			if added > 0 && modified > 0 {
				return errEnough
			}
			return nil
		})
	if !errors.Is(err, errEnough) {
		t.Fatalf("got %v (added %d, modified %d)", err, added, modified)
	}
}

func TestE2ECounterWatchMalformedTokenIsInvalidArgument(t *testing.T) {
	ctx, client := connect(t)
	err := uploadwatch.WatchCounter(ctx, client, &pb.WatchUploadingsRequest{CounterId: counter, ResumeToken: "not a token"},
		func(*pb.WatchUploadingsResponse) error { return nil })
	wantCode(t, err, codes.InvalidArgument)
}
