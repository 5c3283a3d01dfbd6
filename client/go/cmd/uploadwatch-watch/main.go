// Command uploadwatch-watch follows one uploading until its terminal status.
//
//	uploadwatch-watch [-server HOST:PORT] COUNTER ID
//
// Token from METRIKA_OAUTH_TOKEN (sent as call metadata when set). Exit code:
// the gRPC status code, 0 when the stream ends OK.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/uploadwatch/uploadwatch/client/go"
	pb "github.com/uploadwatch/uploadwatch/gen/go/metrika/offline_conversions/v1"
	"google.golang.org/grpc/status"
)

func main() {
	server := flag.String("server", "127.0.0.1:50051", "uploadwatch server host:port")
	flag.Parse()
	if addr := os.Getenv("UPLOADWATCH_ADDR"); addr != "" && !isSet("server") {
		*server = addr
	}
	counter, err1 := strconv.ParseInt(flag.Arg(0), 10, 32)
	id, err2 := strconv.ParseInt(flag.Arg(1), 10, 64)
	if flag.NArg() != 2 || err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "usage: uploadwatch-watch [-server HOST:PORT] COUNTER ID")
		os.Exit(2)
	}
	ctx := uploadwatch.WithToken(context.Background(), os.Getenv("METRIKA_OAUTH_TOKEN"))
	conn, client, err := uploadwatch.Dial(ctx, *server)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(int(status.Code(err)))
	}
	defer conn.Close()

	err = uploadwatch.Watch(ctx, client, int32(counter), id, func(m *pb.WatchUploadingResponse) error {
		u := m.GetUploading()
		fmt.Printf("v%d %s %s lines=%d/%d linked=%d user_not_found=%d terminal=%v\n",
			m.GetVersion(), m.GetObserveTime().AsTime().Format("15:04:05"), u.GetStatus(),
			u.GetLineQuantity(), u.GetSourceQuantity(), u.GetLinkedQuantity(),
			u.GetUserNotFoundQuantity(), m.GetTerminal())
		return nil
	})
	if err != nil {
		reason := ""
		if info := uploadwatch.ErrorInfo(err); info != nil {
			reason = " [" + info.GetReason() + "]"
		}
		fmt.Fprintf(os.Stderr, "error: %s%s: %s\n", status.Code(err), reason, status.Convert(err).Message())
		conn.Close()
		os.Exit(int(status.Code(err)))
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
