package clickhouse

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// The sink speaks TLS to the server's secure native port: rows arrive
// through it with the server's CA trusted; without it, Open fails at once
// (an untrusted certificate is not an outage to wait out).
func TestTLSToTheSecurePort(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := selfSigned(t, dir)
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

func selfSigned(t testing.TB, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o644)
	return certFile, keyFile, cert
}
