package endpoints

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/mediaplatform/relay/internal/httpapi"
)

// MaxURLLength bounds an endpoint URL.
const MaxURLLength = 2048

// sharedAddressSpace is 100.64.0.0/10 (RFC 6598, carrier-grade NAT), and
// thisNetwork 0.0.0.0/8: neither is a public destination, and netip has no
// predicate for them.
var (
	sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork        = netip.MustParsePrefix("0.0.0.0/8")
)

// checkURL validates a customer's endpoint URL, which an attacker
// controls, on the URL alone (no DNS lookup: a name that resolves to a
// private address is Svix's to block at delivery). It refuses anything but
// an absolute https URL with a public host and, if any, a port from 1 to
// 65535: no userinfo, no localhost, no IP literal in a loopback, private,
// link-local, shared, unspecified or multicast range, and no host that a
// URL parser would read as an IPv4 address in another form (2130706433,
// 0x7f.1, 127.1). With allowInsecure (local development) http and
// loopback, private and link-local hosts are accepted too. It returns the
// URL as given.
func checkURL(raw string, allowInsecure bool) (string, *httpapi.Error) {
	bad := func(format string, args ...any) (string, *httpapi.Error) {
		return "", httpapi.Invalid(http.StatusUnprocessableEntity, "invalid_url", "url", format, args...)
	}
	if raw == "" {
		return bad("url must not be empty.")
	}
	if len(raw) > MaxURLLength {
		return bad("url must be at most %d characters, got %d.", MaxURLLength, len(raw))
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\\' }) {
		return bad("url must not contain spaces, control characters or backslashes.")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("url is not a valid URL.")
	}
	if !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return bad("url must be an absolute URL such as https://example.com/webhooks.")
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "https":
	case scheme == "http" && allowInsecure:
	case scheme == "http":
		return bad("url must use https (plain http is accepted only with RELAY_ALLOW_INSECURE_ENDPOINTS=true, for local development).")
	default:
		return bad("url must use https, got %q.", u.Scheme)
	}
	if u.User != nil {
		return bad("url must not contain a user name or password.")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("url's port must be a number from 1 to 65535, got %q.", p)
		}
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" {
		return bad("url must name a host.")
	}
	if strings.ContainsFunc(host, func(r rune) bool { return r >= 0x80 }) {
		return bad("url's host must be ASCII: give an internationalized name in its xn-- form.")
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		if allowInsecure {
			return raw, nil
		}
		return bad("url must not point to localhost.")
	}
	if strings.HasPrefix(u.Host, "[") || strings.Contains(host, ":") {
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return bad("url's host is not a valid IPv6 address.")
		}
		return checkAddr(raw, addr, allowInsecure, bad)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return bad("url's host contains %q, which a host name cannot.", string(c))
		}
	}
	labels := strings.Split(host, ".")
	if last := labels[len(labels)-1]; numericLabel(last) {
		// URL parsers read a host ending in a number as an IPv4 address,
		// in decimal, octal or hex and with fewer than 4 parts: accept
		// only the plain dotted-quad form, and check it.
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is4() {
			return bad("url's host %q is an IPv4 address in a non-standard form; write it as four decimal numbers, or use a host name.", host)
		}
		return checkAddr(raw, addr, allowInsecure, bad)
	}
	for _, l := range labels {
		if l == "" {
			return bad("url's host has an empty label.")
		}
	}
	return raw, nil
}

// numericLabel reports whether a URL parser would read the label as a
// number: decimal digits, or 0x followed by hex digits.
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(l, "0x"); ok {
		return strings.Trim(rest, "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}

func checkAddr(raw string, addr netip.Addr, allowInsecure bool, bad func(string, ...any) (string, *httpapi.Error)) (string, *httpapi.Error) {
	addr = addr.Unmap().WithZone("")
	switch {
	case addr.IsUnspecified() || thisNetwork.Contains(addr):
		return bad("url must not point to an unspecified address (%s).", addr)
	case addr.IsMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsLinkLocalMulticast():
		return bad("url must not point to a multicast address (%s).", addr)
	case allowInsecure:
		return raw, nil
	case addr.IsLoopback():
		return bad("url must not point to a loopback address (%s).", addr)
	case addr.IsPrivate() || sharedAddressSpace.Contains(addr):
		return bad("url must not point to a private address (%s).", addr)
	case addr.IsLinkLocalUnicast():
		return bad("url must not point to a link-local address (%s), such as a cloud metadata service.", addr)
	case !addr.IsGlobalUnicast():
		return bad("url must point to a public address, got %s.", addr)
	}
	return raw, nil
}
