package bench

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// FreePort returns a loopback port nothing listens on.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitPort waits up to 10 s for something to listen on addr.
func WaitPort(addr string) error {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// Broker is `pulse broker` running in its own process.
type Broker struct {
	Addr string
	Cmd  *exec.Cmd
}

// StartBroker starts `pulse broker` with topic events of 8 partitions on a
// free loopback port and waits for it to listen.
func StartBroker(pulse string) (*Broker, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	b := &Broker{Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	b.Cmd = exec.Command(pulse, "broker", "--port", strconv.Itoa(port), "--partitions", "8", "--topics", "events")
	if err := b.Cmd.Start(); err != nil {
		return nil, err
	}
	if err := WaitPort(b.Addr); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// Stop asks the broker to exit.
func (b *Broker) Stop() { b.Cmd.Process.Signal(syscall.SIGTERM) }
