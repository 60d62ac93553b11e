// Package policy is the one place that decides who may read or change what
// in a care plan (DESIGN.md "Auth (C)"). An auditor should be able to read
// this package alone and know every access rule; handlers call it and map
// its errors, and never make access decisions of their own.
//
// The functions are pure: they take the verified principal and the plans
// and return a decision, so every rule is tested without a server or store.
// Denials are *DeniedError values carrying an UPPER_SNAKE reason for the
// gRPC ErrorInfo and the field paths that were refused. Messages never hold
// NHS numbers or names, because denials are logged.
package policy
