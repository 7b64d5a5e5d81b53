package endpoints

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url              string
		secure, insecure bool // accepted without / with AllowInsecureURLs
	}{
		{"https://example.com/hooks", true, true},
		{"https://example.com:8443/hooks?x=1", true, true},
		{"https://example.com:65535/hooks", true, true},
		{"https://example.com:/hooks", true, true},
		{"https://example.com:0/hooks", false, false},
		{"https://example.com:65536/hooks", false, false},
		{"https://example.com:99999/hooks", false, false},
		{"https://example.com:0443/hooks", true, true},
		{"HTTPS://Example.COM/hooks", true, true},
		{"https://xn--bcher-kva.example/hooks", true, true},
		{"https://8.8.8.8/hooks", true, true},
		{"https://[2606:4700::1111]/hooks", true, true},
		{"https://1.2.3.4.example.com/hooks", true, true},
		{"http://example.com/hooks", false, true},
		{"http://127.0.0.1:8080/hooks", false, true},
		{"http://localhost:3000/hooks", false, true},
		{"https://10.0.0.1/hooks", false, true},
		{"https://172.31.255.255/hooks", false, true},
		{"https://192.168.0.1/hooks", false, true},
		{"https://169.254.169.254/latest", false, true},
		{"https://[fe80::1]/hooks", false, true},
		{"https://[fd00::1]/hooks", false, true},
		{"https://[::1]/hooks", false, true},
		{"https://[::ffff:10.0.0.1]/hooks", false, true},
		{"https://100.64.0.1/hooks", false, true},
		{"https://0.0.0.0/hooks", false, false},
		{"https://0.1.2.3/hooks", false, false},
		{"https://[::]/hooks", false, false},
		{"https://224.0.0.1/hooks", false, false},
		{"https://2130706433/hooks", false, false},
		{"https://127.1/hooks", false, false},
		{"https://0x7f000001/hooks", false, false},
		{"https://0177.0.0.1/hooks", false, false},
		{"https://example.com./hooks", true, true},
		{"https://localhost./hooks", false, true},
		{"https://a.localhost/hooks", false, true},
		{"https://user@example.com/hooks", false, false},
		{"https://:@example.com/hooks", false, false},
		{"ftp://example.com/hooks", false, false},
		{"javascript:alert(1)", false, false},
		{"//example.com/hooks", false, false},
		{"/hooks", false, false},
		{"", false, false},
		{"https://", false, false},
		{"https://exa mple.com/", false, false},
		{"https://example.com\\@evil.com/", false, false},
		{"https://bücher.example/hooks", false, false},
		{"https://１２７.０.０.１/hooks", false, false},
		{"https://ex%41mple.com/", false, false},
		{"https://" + strings.Repeat("a", 2050) + ".com/", false, false},
	} {
		_, errSecure := checkURL(tc.url, false)
		_, errInsecure := checkURL(tc.url, true)
		if (errSecure == nil) != tc.secure || (errInsecure == nil) != tc.insecure {
			t.Errorf("%.60q: accepted %v / %v with insecure allowed, want %v / %v (%v, %v)", tc.url, errSecure == nil, errInsecure == nil, tc.secure, tc.insecure, errSecure, errInsecure)
		}
		if errSecure != nil && (errSecure.Param != "url" || errSecure.Status != 422) {
			t.Errorf("%q: refusal %+v, want 422 naming url", tc.url, errSecure)
		}
	}
}

// FuzzCheckURL: whatever the input, an accepted URL (insecure endpoints
// off) is an https URL without userinfo whose host, as Go's parser reads
// it, is a name other than localhost or a public unicast address, and a
// URL is never refused with insecure endpoints on but accepted with them
// off.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hooks", "http://127.0.0.1/", "https://[::1]/", "https://2130706433/",
		"https://user@example.com/", "https://169.254.169.254/", "https://0x7f.1/", "https://a.b.c.d.e/",
		"https://[::ffff:127.0.0.1]:443/x", "https://example.com./", "https://10.0.0.1:8080/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, bad := checkURL(raw, false)
		_, badInsecure := checkURL(raw, true)
		if bad == nil && badInsecure != nil {
			t.Fatalf("%q accepted when secure, refused when insecure: %v", raw, badInsecure)
		}
		if bad != nil {
			if bad.Param != "url" || bad.Message == "" {
				t.Fatalf("%q: refusal %+v does not name url", raw, bad)
			}
			return
		}
		if got != raw {
			t.Fatalf("%q came back as %q", raw, got)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%q accepted but does not parse: %v", raw, err)
		}
		if !strings.EqualFold(u.Scheme, "https") || u.User != nil || u.Host == "" {
			t.Fatalf("%q accepted: scheme %q, user %v, host %q", raw, u.Scheme, u.User, u.Host)
		}
		host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			t.Fatalf("%q accepted: localhost", raw)
		}
		if addr, err := netip.ParseAddr(host); err == nil {
			addr = addr.Unmap()
			if !addr.IsGlobalUnicast() || addr.IsPrivate() || addr.IsLoopback() || addr.IsLinkLocalUnicast() {
				t.Fatalf("%q accepted: address %s is not public", raw, addr)
			}
		}
		if strings.Trim(host, "0123456789.") == "" && !strings.Contains(host, ":") {
			if _, err := netip.ParseAddr(host); err != nil {
				t.Fatalf("%q accepted: numeric host %q that is not a dotted quad", raw, host)
			}
		}
	})
}
