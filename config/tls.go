package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS is a client's TLS settings, as every tls block of the config file
// writes them (kafka.tls, clickhouse.tls). The zero value is TLS off.
type TLS struct {
	Enabled  bool   `yaml:"enabled"`
	CAFile   string `yaml:"ca_file"`   // PEM bundle of the CAs to trust; "": the system's roots
	CertFile string `yaml:"cert_file"` // client certificate for mutual TLS, with KeyFile
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify trusts any server certificate: for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Client returns the TLS client configuration (TLS 1.2 at least), or nil
// when TLS is off. It reads the files the settings name, so it runs when
// the connection is configured, once; every problem is returned at once,
// joined, each an *Error keyed ca_file or cert_file.
func (c TLS) Client() (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	tc := &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	var errs []error
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			errs = append(errs, &Error{Key: "ca_file", Err: err})
		} else if tc.RootCAs = x509.NewCertPool(); !tc.RootCAs.AppendCertsFromPEM(pem) {
			errs = append(errs, Errorf("ca_file", "%s holds no PEM certificate", c.CAFile))
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			errs = append(errs, Errorf("cert_file", "with key_file: %w", err))
		} else {
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return tc, nil
}

// String says what the settings do, for logs: "off", or the files.
func (c TLS) String() string {
	if !c.Enabled {
		return "off"
	}
	return fmt.Sprintf("on (ca_file %q, cert_file %q)", c.CAFile, c.CertFile)
}
