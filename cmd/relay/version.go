package main

import "runtime/debug"

// buildVersion is stamped at build time where the toolchain cannot read the
// version from VCS (the container build, which has no .git):
//
//	go build -ldflags "-X main.buildVersion=v1.4.0" ./cmd/relay
var buildVersion string

// version is buildVersion when stamped, else the module version and VCS
// revision the Go toolchain recorded in the binary.
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}
