// Package chtest starts real ClickHouse servers for tests and benchmarks:
// Debian's clickhouse-server, each in its own directory on free ports.
package chtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Server is a running ClickHouse server.
type Server struct {
	dir, bin   string
	tcp, httpP int
	tls        int // the secure native port, or 0
	cmd        *exec.Cmd
}

// ErrNotInstalled is returned by Launch without clickhouse-server.
var ErrNotInstalled = errors.New("clickhouse-server is not installed (apt-get install clickhouse-server)")

// Start launches a server for a test and stops it when the test ends.
// Without clickhouse-server the test is skipped — or fails, when
// PULSE_REQUIRE_CLICKHOUSE is set (as the test script sets it).
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch(t.TempDir())
	if errors.Is(err, ErrNotInstalled) && os.Getenv("PULSE_REQUIRE_CLICKHOUSE") == "" {
		t.Skip("clickhouse-server is not installed; ./scripts/test.sh installs it and makes these tests required")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartTLS is Start with the secure native port open too, serving the
// PEM certificate and key of certFile and keyFile.
func StartTLS(t testing.TB, certFile, keyFile string) *Server {
	t.Helper()
	s, err := launch(t.TempDir(), certFile, keyFile)
	if errors.Is(err, ErrNotInstalled) && os.Getenv("PULSE_REQUIRE_CLICKHOUSE") == "" {
		t.Skip("clickhouse-server is not installed; ./scripts/test.sh installs it and makes these tests required")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// SecureAddr is the address of the secure native port (StartTLS only).
func (s *Server) SecureAddr() string { return fmt.Sprintf("127.0.0.1:%d", s.tls) }

// Launch starts a server whose files live in dir.
func Launch(dir string) (*Server, error) { return launch(dir, "", "") }

func launch(dir, certFile, keyFile string) (*Server, error) {
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	s := &Server{dir: dir, bin: bin}
	if s.tcp, err = freePort(); err != nil {
		return nil, err
	}
	if s.httpP, err = freePort(); err != nil {
		return nil, err
	}
	secure := ""
	if certFile != "" {
		if s.tls, err = freePort(); err != nil {
			return nil, err
		}
		secure = fmt.Sprintf(`<tcp_port_secure>%d</tcp_port_secure>
  <openSSL><server><certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>
    <disableProtocols>sslv2,sslv3</disableProtocols><preferServerCiphers>true</preferServerCiphers></server></openSSL>`, s.tls, certFile, keyFile)
	}
	cfg := fmt.Sprintf(`<yandex>
  <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  %[4]s
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>536870912</mark_cache_size>
</yandex>
`, dir, s.tcp, s.httpP, secure)
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return s, s.Restart()
}

// Pid is the server's process id (benchmarks read its CPU time).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Addr is the native-protocol address.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.tcp) }

// Restart starts a stopped server again, on the same files and ports.
func (s *Server) Restart() error {
	s.cmd = exec.Command(s.bin, "--config-file="+filepath.Join(s.dir, "config.xml"))
	s.cmd.Dir = s.dir
	if err := s.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", s.httpP))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
			s.Stop()
			return fmt.Errorf("clickhouse-server did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond) // clickhouse-server is a separate process: poll it until it answers
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 20 s).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SelfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// and its key into dir (the certificate is its own CA), for StartTLS and
// for clients that must trust it.
func SelfSigned(t testing.TB, dir string) (certFile, keyFile string, cert *x509.Certificate) {
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
