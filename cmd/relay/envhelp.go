package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// envSetting is one environment variable the commands read.
type envSetting struct {
	name     string
	commands []string // "all" for the shared settings
	defaults []string // the default per entry of commands
	secret   bool
}

// environment lists every environment variable a command of app reads,
// from the flag definitions themselves, so the list cannot drift from them.
func environment(app *kong.Application) []envSetting {
	byName := map[string]*envSetting{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		cmd := "all"
		if n.Parent != nil {
			cmd = strings.TrimSpace(n.Path())
		}
		for _, f := range n.Flags {
			for _, env := range f.Envs {
				s := byName[env]
				if s == nil {
					s = &envSetting{name: env, secret: slices.Contains(secrets, env)}
					byName[env] = s
				}
				def := f.Default
				switch {
				case s.secret:
					def = "(secret)"
				case !f.HasDefault && f.IsBool():
					def = "false"
				case !f.HasDefault || def == "":
					def = "(none)"
				}
				s.commands = append(s.commands, cmd)
				s.defaults = append(s.defaults, def)
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(app.Node)
	out := make([]envSetting, 0, len(byName))
	for _, s := range byName {
		out = append(out, *s)
	}
	// The shared settings first, then by name.
	slices.SortFunc(out, func(a, b envSetting) int {
		if (a.commands[0] == "all") != (b.commands[0] == "all") {
			if a.commands[0] == "all" {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	return out
}

// writeEnvironment prints the environment table of relay --help.
func writeEnvironment(w io.Writer, app *kong.Application) error {
	var b strings.Builder
	b.WriteString("\nEnvironment: every variable a command reads, with its default (a flag of\n" +
		"the command overrides it; `relay COMMAND --help` names the flag):\n\n")
	settings := environment(app)
	// The columns are as wide as their longest entry, so every row lines up.
	nameWidth, defWidth := len("VARIABLE"), len("DEFAULT")
	for _, s := range settings {
		nameWidth = max(nameWidth, len(s.name))
		for _, d := range s.defaults {
			defWidth = max(defWidth, len(d))
		}
	}
	row := func(name, def, commands string) {
		fmt.Fprintf(&b, "  %-*s %-*s %s\n", nameWidth, name, defWidth, def, commands)
	}
	row("VARIABLE", "DEFAULT", "COMMANDS")
	for _, s := range settings {
		def := s.defaults[0]
		if !slices.ContainsFunc(s.defaults, func(d string) bool { return d != def }) {
			row(s.name, def, strings.Join(s.commands, ", "))
			continue
		}
		// Commands that default differently get a line each.
		for i, cmd := range s.commands {
			row(s.name, s.defaults[i], cmd)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// helpPrinter is kong's help, with the environment table after the
// top-level help.
func helpPrinter(options kong.HelpOptions, ctx *kong.Context) error {
	if err := kong.DefaultHelpPrinter(options, ctx); err != nil {
		return err
	}
	if ctx.Selected() != nil {
		return nil
	}
	return writeEnvironment(ctx.Stdout, ctx.Model)
}
