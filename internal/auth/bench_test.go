package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store/sqlite"
)

// BenchmarkLogin measures password logins per second with the credential
// cache off (every login pays argon2id) and warm (repeat logins of one
// user, as mail apps that reconnect all day produce).
func BenchmarkLogin(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache int
	}{{"cold", 0}, {"warm", 1000}} {
		b.Run(tc.name, func(b *testing.B) {
			st, err := sqlite.Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			svc, err := New(st, Options{CacheSize: tc.cache, CacheTTL: time.Hour, LockFor: time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close()
			f := &fixture{st: st, svc: svc}
			f.addAccount(b, alice, alicePW)
			ctx := context.Background()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					// A different client address each time, as from many users.
					sess := session(true, fmt.Sprintf("10.%d.%d.%d:1000", i>>16&255, i>>8&255, i&255))
					if _, err := svc.Login(ctx, sess, alice, alicePW); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
		})
	}
}
