package pgtest

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PgBouncer is a PgBouncer of one test's own in front of the test server
// (TEST_DATABASE_URL or DATABASE_URL), started by StartPgBouncer and
// stopped when the test ends.
type PgBouncer struct {
	// Port is the TCP port PgBouncer listens on, on 127.0.0.1.
	Port int
	// Dir holds pgbouncer.ini, the user list and pgbouncer.log.
	Dir string

	base *url.URL
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// PgBouncerConfig configures StartPgBouncer.
type PgBouncerConfig struct {
	// PoolMode is pool_mode: transaction (the default), session or
	// statement.
	PoolMode string
	// PoolSize is default_pool_size: server connections per database and
	// user. Default 4.
	PoolSize int
}

// StartPgBouncer starts Debian's pgbouncer (PGBOUNCER names another
// binary) on a free port of 127.0.0.1 with a generated configuration:
// every database of the test server (a wildcard entry), auth_type trust
// with the base URL's user in its user list (and the base URL's password,
// if any, in the database entry), the given pool mode and size, and the
// admin console (database pgbouncer) open to that user. As root it runs
// as the postgres user (PgBouncer refuses root). It fails tb when no
// pgbouncer binary is found: `make test` installs one.
func StartPgBouncer(tb testing.TB, cfg PgBouncerConfig) *PgBouncer {
	tb.Helper()
	bin, err := findPgBouncer()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	base, err := url.Parse(BaseURL(tb))
	if err != nil {
		tb.Fatalf("pgtest: parse database URL: %v", err)
	}
	if cfg.PoolMode == "" {
		cfg.PoolMode = "transaction"
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 4
	}
	dir, err := os.MkdirTemp("", "relay-pgbouncer-")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // readable by the postgres user
		tb.Fatalf("pgtest: %v", err)
	}
	p := &PgBouncer{Dir: dir, base: base}

	for try := 0; ; try++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("pgtest: pick a port: %v", err)
		}
		if err := p.configure(port, cfg); err != nil {
			tb.Fatalf("pgtest: write pgbouncer.ini: %v", err)
		}
		err = p.start(bin)
		if err == nil {
			break
		}
		if try < 4 && strings.Contains(p.out.String(), "Address already in use") {
			continue
		}
		tb.Fatalf("pgtest: start pgbouncer: %v\n%s", err, p.out.String())
	}
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("pgtest: pgbouncer log:\n%s", tail(p.out.String(), 4000))
		}
	})
	return p
}

// URL connects through PgBouncer to database name as the base URL's user;
// query adds URL parameters (e.g. "default_query_exec_mode=exec").
func (p *PgBouncer) URL(name string, query ...string) string {
	u := url.URL{Scheme: "postgres", User: url.User(p.user()), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)), Path: "/" + name}
	q := url.Values{"sslmode": {"disable"}}
	for _, kv := range query {
		k, v, _ := strings.Cut(kv, "=")
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// AdminURL connects to PgBouncer's admin console (SHOW POOLS, SHOW
// CLIENTS), which speaks the simple query protocol only.
func (p *PgBouncer) AdminURL() string {
	return p.URL("pgbouncer", "default_query_exec_mode=simple_protocol")
}

func (p *PgBouncer) user() string {
	if u := p.base.User.Username(); u != "" {
		return u
	}
	return "postgres"
}

func (p *PgBouncer) configure(port int, cfg PgBouncerConfig) error {
	host, serverPort := p.base.Hostname(), p.base.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if serverPort == "" {
		serverPort = "5432"
	}
	target := "host=" + host + " port=" + serverPort
	if pw, ok := p.base.User.Password(); ok {
		target += " password=" + pw
	}
	ini := fmt.Sprintf(`; pgtest.StartPgBouncer: a PgBouncer of one test's own.
[databases]
* = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = %s
pool_mode = %s
default_pool_size = %d
max_client_conn = 500
server_check_delay = 10
logfile =
pidfile =
`, target, port, filepath.Join(p.Dir, "users.txt"), p.user(), cfg.PoolMode, cfg.PoolSize)
	users := fmt.Sprintf("%q \"\"\n", p.user())
	if err := os.WriteFile(filepath.Join(p.Dir, "users.txt"), []byte(users), 0o644); err != nil {
		return err
	}
	p.Port = port
	return os.WriteFile(filepath.Join(p.Dir, "pgbouncer.ini"), []byte(ini), 0o644)
}

// start runs pgbouncer in the foreground and waits until it accepts
// connections.
func (p *PgBouncer) start(bin string) error {
	args := []string{filepath.Join(p.Dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return fmt.Errorf("running as root needs a postgres user to run pgbouncer as: %w", err)
		}
		args = append([]string{"-u", "postgres"}, args...)
	}
	p.out = &lockedBuffer{}
	p.done = make(chan struct{})
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = "/"
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("pgbouncer exited: %s", p.cmd.ProcessState)
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("pgbouncer does not accept connections after 30s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends pgbouncer (SIGTERM: immediate shutdown) and waits for it.
func (p *PgBouncer) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// findPgBouncer returns PGBOUNCER, or pgbouncer on PATH or in /usr/sbin
// (Debian's package).
func findPgBouncer() (string, error) {
	if bin := os.Getenv("PGBOUNCER"); bin != "" {
		return bin, nil
	}
	if bin, err := exec.LookPath("pgbouncer"); err == nil {
		return bin, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", fmt.Errorf("no pgbouncer binary: install Debian's pgbouncer package (make test does, as root) or set PGBOUNCER")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// lockedBuffer is a bytes.Buffer safe for a process's output and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
