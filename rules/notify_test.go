package rules

import (
	"errors"
	"strings"
	"testing"
)

// A notifier url is a secret (Slack's path is the credential): a bad value
// from the environment is refused without being echoed, since the error
// goes to the reload answer and to `pulse rules check`.
func TestBadNotifyURLIsNotEchoed(t *testing.T) {
	const token = "T0AAAA/B0BBBB/xoxsecret123"
	env := func(name string) (string, bool) {
		switch name {
		case "NO_SCHEME":
			return "hooks.slack.com/services/" + token, true
		case "FTP":
			return "ftp://hooks.slack.com/services/" + token, true
		case "BAD_HOST":
			return "https://hooks slack com/services/" + token, true
		}
		return "", false
	}
	for _, url := range []string{"${NO_SCHEME}", "${FTP}", "${BAD_HOST}", "hooks.slack.com/services/" + token} {
		src := "notify:\n  - name: n\n    type: slack\n    url: " + url + "\n"
		_, err := Load("r.yaml", []byte(src), LoadOptions{LookupEnv: env})
		if err == nil {
			t.Fatalf("url %s loaded", url)
		}
		msg := err.Error()
		if strings.Contains(msg, "xoxsecret123") || strings.Contains(msg, "B0BBBB") {
			t.Errorf("url %s: the error echoes the secret: %s", url, msg)
		}
		if !errors.Is(err, ErrBadValue) || !strings.Contains(msg, "r.yaml:4: notify[0].url") {
			t.Errorf("url %s: want a bad value at r.yaml:4: notify[0].url, got %s", url, msg)
		}
	}
	// The variable's name is no secret: it says what to fix.
	_, err := Load("r.yaml", []byte("notify:\n  - name: n\n    type: slack\n    url: ${NO_SCHEME}\n"), LoadOptions{LookupEnv: env})
	if err == nil || !strings.Contains(err.Error(), "NO_SCHEME") {
		t.Errorf("the error does not name the variable: %v", err)
	}
}
