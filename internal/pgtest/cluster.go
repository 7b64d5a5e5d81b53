package pgtest

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Cluster is a throwaway PostgreSQL server of one test's own, for tests
// that stop or restart the database under a running relay. It listens on
// 127.0.0.1 on a free port with trust authentication, keeps its socket
// and data in a temporary directory, and is stopped and removed when the
// test ends.
//
// Durability is off only against a machine crash (fsync and
// full_page_writes off): commits are still written to the WAL before they
// are acknowledged (synchronous_commit on), so a committed row survives
// Restart, which stops the server the way a crash of PostgreSQL would.
//
// The server binaries are those of PG_BINDIR when set, else the newest
// /usr/lib/postgresql/*/bin (Debian's layout; `make test` installs them).
// initdb refuses to run as root, so as root every server program runs as
// the postgres user, via runuser.
type Cluster struct {
	// URL connects to the cluster's postgres database as the postgres
	// superuser.
	URL string
	// Port is the TCP port the cluster listens on.
	Port int
	// Dir holds the data directory (Dir/data), the server log
	// (Dir/postgres.log) and the Unix socket.
	Dir string

	bindir string
	mu     sync.Mutex
	up     bool
}

// StartCluster initializes and starts a cluster that is stopped and
// removed when tb ends. It fails tb when no server binaries are found.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bindir, err := findBindir()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	dir, err := os.MkdirTemp("", "relay-pgtest-")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	c := &Cluster{Dir: dir, bindir: bindir}
	tb.Cleanup(func() {
		if err := c.stop("immediate"); err != nil {
			tb.Errorf("pgtest: stop cluster: %v", err)
		}
		if tb.Failed() {
			c.logTail(tb)
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("pgtest: remove cluster directory: %v", err)
		}
	})
	if runAsPostgres() {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("pgtest: running as root needs a postgres user to own the cluster: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatalf("pgtest: chown cluster directory: %v", err)
		}
	}

	if out, err := c.pg("initdb", "-D", c.data(), "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}

	// The port is picked free and then bound by the server, so another
	// process may take it in between: try a few.
	for try := 0; ; try++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("pgtest: pick a port: %v", err)
		}
		if err := c.configure(port); err != nil {
			tb.Fatalf("pgtest: write postgresql.conf: %v", err)
		}
		before := len(c.log())
		err = c.start()
		if err == nil {
			break
		}
		// Only this start's lines: an earlier bind failure must not make
		// a different failure look like one.
		if log := c.log(); try < 4 && len(log) >= before && strings.Contains(log[before:], "could not bind") {
			continue
		}
		c.logTail(tb)
		tb.Fatalf("pgtest: start cluster: %v", err)
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	return c
}

// Restart stops the cluster the way a crash would (immediate mode: no
// checkpoint, every connection dropped, WAL recovery at start) and starts
// it again on the same port.
func (c *Cluster) Restart(tb testing.TB) {
	tb.Helper()
	if err := c.stop("immediate"); err != nil {
		tb.Fatalf("pgtest: stop cluster: %v", err)
	}
	if err := c.start(); err != nil {
		c.logTail(tb)
		tb.Fatalf("pgtest: start cluster: %v", err)
	}
}

// Stop stops the cluster (fast mode: connections are closed, then a
// checkpoint). Stopping a stopped cluster does nothing.
func (c *Cluster) Stop(tb testing.TB) {
	tb.Helper()
	if err := c.stop("fast"); err != nil {
		tb.Fatalf("pgtest: stop cluster: %v", err)
	}
}

// Start starts a stopped cluster again on the same port. Starting a
// running cluster does nothing.
func (c *Cluster) Start(tb testing.TB) {
	tb.Helper()
	if err := c.start(); err != nil {
		c.logTail(tb)
		tb.Fatalf("pgtest: start cluster: %v", err)
	}
}

func (c *Cluster) data() string    { return filepath.Join(c.Dir, "data") }
func (c *Cluster) logPath() string { return filepath.Join(c.Dir, "postgres.log") }

func (c *Cluster) configure(port int) error {
	conf := fmt.Sprintf(`
# pgtest.StartCluster: a throwaway cluster for one test. Commits survive a
# crash of PostgreSQL (synchronous_commit on), not one of the machine.
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 200
fsync = off
synchronous_commit = on
full_page_writes = off
jit = off
timezone = 'UTC'
`, port, c.Dir)
	// Written as an include so that a retry on another port replaces it.
	if err := os.WriteFile(filepath.Join(c.data(), "pgtest.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	main := filepath.Join(c.data(), "postgresql.conf")
	b, err := os.ReadFile(main)
	if err != nil {
		return err
	}
	const include = "\ninclude 'pgtest.conf'\n"
	if !bytes.Contains(b, []byte(include)) {
		if err := os.WriteFile(main, append(b, include...), 0o644); err != nil {
			return err
		}
	}
	c.Port = port
	return nil
}

func (c *Cluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up {
		return nil
	}
	if out, err := c.pg("pg_ctl", "-D", c.data(), "-l", c.logPath(), "-w", "-t", "60", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s", err, out)
	}
	c.up = true
	return nil
}

func (c *Cluster) stop(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up {
		return nil
	}
	if out, err := c.pg("pg_ctl", "-D", c.data(), "-m", mode, "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	c.up = false
	return nil
}

// pg runs a server program of the cluster's version, as the postgres user
// when we are root, from / so that it can always read its working
// directory.
func (c *Cluster) pg(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bindir, prog)
	var cmd *exec.Cmd
	if runAsPostgres() {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = "/"
	// pg_ctl starts the server with its output sent to -l, so it holds no
	// pipe of ours open and CombinedOutput returns when pg_ctl does.
	return cmd.CombinedOutput()
}

func (c *Cluster) log() string {
	b, _ := os.ReadFile(c.logPath())
	return string(b)
}

// logTail logs the end of the server log, for a failing test.
func (c *Cluster) logTail(tb testing.TB) {
	tb.Helper()
	s := c.log()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	tb.Logf("pgtest: cluster log (%s):\n%s", c.logPath(), s)
}

func runAsPostgres() bool { return os.Geteuid() == 0 }

// findBindir returns PG_BINDIR, or the newest /usr/lib/postgresql/*/bin
// holding initdb and pg_ctl.
func findBindir() (string, error) {
	has := func(dir string) bool {
		for _, prog := range []string{"initdb", "pg_ctl", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv("PG_BINDIR"); dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("PG_BINDIR=%s has no initdb, pg_ctl and postgres", dir)
		}
		return dir, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	type candidate struct {
		dir     string
		version []int
	}
	var found []candidate
	for _, dir := range matches {
		if !has(dir) {
			continue
		}
		var v []int
		for _, part := range strings.Split(filepath.Base(filepath.Dir(dir)), ".") {
			n, _ := strconv.Atoi(part)
			v = append(v, n)
		}
		found = append(found, candidate{dir, v})
	}
	if len(found) == 0 {
		return "", fmt.Errorf("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: " +
			"install Debian's postgresql package (make test does) or set PG_BINDIR")
	}
	newest := slices.MaxFunc(found, func(a, b candidate) int {
		return cmp.Or(slices.Compare(a.version, b.version), strings.Compare(a.dir, b.dir))
	})
	return newest.dir, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
