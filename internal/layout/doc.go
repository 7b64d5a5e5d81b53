// Package layout checks the module's package layout from outside, with
// go list: the README's map of packages and imports matches the code,
// what producers import stays small, and test scaffolding stays out of
// production packages. It has no code of its own; its test is the check.
package layout
