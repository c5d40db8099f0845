package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Credentials are what a request must present: a bearer token
// ("Authorization: Bearer TOKEN"), basic auth, or either where both are
// set. The zero value asks for nothing.
type Credentials struct {
	Token          string
	User, Password string
}

// Set reports whether the credentials ask for anything.
func (c Credentials) Set() bool { return c.Token != "" || c.User != "" }

// match reports whether r presents the credentials. Comparisons take the
// same time whatever the secret.
func (c Credentials) match(r *http.Request) bool {
	eq := func(a, b string) bool {
		ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
		return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
	}
	if c.Token != "" {
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && eq(strings.TrimSpace(v), c.Token) {
			return true
		}
	}
	if c.User != "" {
		if u, p, ok := r.BasicAuth(); ok && eq(u, c.User) && eq(p, c.Password) {
			return true
		}
	}
	return false
}

// Auth guards the server. Read covers every GET but the probes (/healthz,
// /readyz): the API, the pages and /metrics; Write covers the endpoints
// that change something (snoozes, rules reload), and may read too. Where
// Write is not set, writing takes the Read credentials. The zero value
// lets everyone in: bind listen to a loopback address then.
type Auth struct {
	Read, Write Credentials
}

func (a Auth) canRead(r *http.Request) bool {
	return !a.Read.Set() || a.Read.match(r) || (a.Write.Set() && a.Write.match(r))
}

func (a Auth) canWrite(r *http.Request) bool {
	switch {
	case a.Write.Set():
		return a.Write.match(r)
	case a.Read.Set():
		return a.Read.match(r)
	}
	return true
}

func (a Auth) challenge(w http.ResponseWriter, c Credentials) {
	if c.Token != "" {
		w.Header().Add("WWW-Authenticate", `Bearer realm="pulse"`)
	}
	if c.User != "" {
		w.Header().Add("WWW-Authenticate", `Basic realm="pulse"`)
	}
	http.Error(w, "authentication required", http.StatusUnauthorized)
}

// reading guards a read-only route.
func (s *Server) reading(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.Auth.canRead(r) {
			s.Auth.challenge(w, s.Auth.Read)
			return
		}
		h(w, r)
	}
}

// writing guards a route that changes something: only from the server's
// own pages or from non-browser clients (no cross-site request), with a
// JSON or form body (a cross-site form cannot send JSON without asking
// first, and text/plain is how cross-site requests slip through), and
// with the write credentials.
func (s *Server) writing(h http.HandlerFunc) http.HandlerFunc { return s.guarded(formOrJSON, h) }

// writingYAML guards a route whose body is a rules file as writing does,
// with a YAML (or JSON) body: no browser sends those cross-site without
// asking first either.
func (s *Server) writingYAML(h http.HandlerFunc) http.HandlerFunc { return s.guarded(yamlOrJSON, h) }

func (s *Server) guarded(bodyType func(*http.Request) error, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := sameOrigin(r); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		if err := bodyType(r); err != nil {
			http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
			return
		}
		if !s.Auth.canWrite(r) {
			c := s.Auth.Write
			if !c.Set() {
				c = s.Auth.Read
			}
			s.Auth.challenge(w, c)
			return
		}
		h(w, r)
	}
}

var crossOrigin = http.NewCrossOriginProtection()

// errCrossOrigin refuses a request from another site.
var errCrossOrigin = errors.New("cross-origin request refused: changes are accepted from Pulse's own pages and from non-browser clients only")

// sameOrigin refuses a browser request from another site: by
// Sec-Fetch-Site, else by Origin against Host (net/http's
// CrossOriginProtection), else by Referer. A request with none of them is
// not from a browser.
func sameOrigin(r *http.Request) error {
	if err := crossOrigin.Check(r); err != nil {
		return errCrossOrigin
	}
	if r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != "" {
		return nil
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return errCrossOrigin
		}
	}
	return nil
}

// formOrJSON refuses a body of any other type than JSON or a form.
func formOrJSON(r *http.Request) error {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		switch t {
		case "application/json", "application/x-www-form-urlencoded", "multipart/form-data":
			return nil
		}
	}
	return errors.New("Content-Type must be application/json or a form (application/x-www-form-urlencoded, multipart/form-data)")
}

// yamlOrJSON refuses a body of any other type than YAML or JSON (which
// is YAML too).
func yamlOrJSON(r *http.Request) error {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		switch t {
		case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json":
			return nil
		}
	}
	return errors.New("Content-Type must be application/yaml (or application/x-yaml, text/yaml, application/json): the body is a rules file")
}
