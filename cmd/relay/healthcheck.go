package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// HealthcheckCmd probes a running relay's HTTP server: a container health
// check for images without curl (the relay's is distroless).
type HealthcheckCmd struct {
	HTTPAddr string        `name:"http-addr" env:"RELAY_HTTP_ADDR" default:"127.0.0.1:8080" help:"Address the relay serves /readyz on (an unspecified host such as 0.0.0.0 is probed on loopback)."`
	Path     string        `name:"path" default:"/readyz" enum:"/readyz,/healthz" help:"Endpoint to probe: /readyz or /healthz."`
	Timeout  time.Duration `name:"timeout" default:"3s" help:"Timeout of the probe."`
}

// Validate refuses a timeout that could never succeed (exit code 2).
func (c *HealthcheckCmd) Validate() error {
	if c.Timeout <= 0 {
		return usagef("--timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

// Run exits 0 when the endpoint answers 200, 1 otherwise.
func (c *HealthcheckCmd) Run(ctx context.Context) error {
	host, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		return usagef("RELAY_HTTP_ADDR (--http-addr) must be host:port, got %q", c.HTTPAddr)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + c.Path
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(os.Stdout, strings.TrimSpace(string(body)))
	return nil
}
