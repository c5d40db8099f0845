package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// The sink speaks TLS to the server's secure native port: rows arrive
// through it with the server's CA trusted; without it, Open fails at once
// (an untrusted certificate is not an outage to wait out).
func TestTLSToTheSecurePort(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := chtest.SelfSigned(t, dir)
	srv := chtest.StartTLS(t, certFile, keyFile)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	ctx := context.Background()
	sink, err := Open(ctx, Config{Addr: []string{srv.SecureAddr()}, Database: "secure", FlushInterval: 50 * time.Millisecond, Log: quiet,
		TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	days, nScores, _ := batches(t, 3, 2)
	for i := range days {
		if err := sink.Write(ctx, &days[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, sink, "SELECT count() FROM secure.scores FINAL"); n != uint64(nScores) {
		t.Fatalf("%d score rows over TLS, want %d", n, nScores)
	}
	_, err = Open(ctx, Config{Addr: []string{srv.SecureAddr()}, Database: "secure", Log: quiet, TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err == nil {
		t.Fatal("Open trusted a certificate of an unknown CA")
	}
}
