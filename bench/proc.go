package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// ProcessUsage is the user and system CPU time, in seconds, a process has
// used, and the minor page faults it has taken: first touches of memory,
// which cost microseconds each on a virtual machine. Both are 0 when the
// process is gone.
func ProcessUsage(pid int) (cpu, faults float64) {
	return usage(fmt.Sprintf("/proc/%d/stat", pid))
}

// ThreadUsage is ProcessUsage of one thread (tid) of process pid.
func ThreadUsage(pid, tid int) (cpu, faults float64) {
	return usage(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
}

func usage(statFile string) (cpu, faults float64) {
	b, err := os.ReadFile(statFile)
	if err != nil {
		return 0, 0
	}
	// Fields after the command name (which may hold spaces) in ")":
	// minflt is the 10th, utime the 14th, stime the 15th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	flt, _ := strconv.ParseFloat(f[7], 64)
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100, flt // USER_HZ
}

// Memory is the resident memory of a process now (VmRSS) and at its peak
// so far (VmHWM), in bytes; 0 when the process is gone.
func Memory(pid int) (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != "VmRSS" && name != "VmHWM" {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak
}

// MachineBusy is the CPU time all processors have spent busy (not idle or
// waiting for I/O), kernel included, in seconds.
func MachineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	var busy float64
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100 // USER_HZ
}

// MetricSum sums the samples whose line starts with prefix in the
// /metrics of a daemon listening on 127.0.0.1:port; 0 when it does not
// answer.
func MetricSum(port int, prefix string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}
