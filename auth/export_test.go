package auth

import "crypto"

// SignerKey exposes a signer's private key so tests can forge tokens that
// Mint refuses to make (no kid, another alg).
func SignerKey(s *Signer) crypto.Signer { return s.key }

// Thumbprint exposes the RFC 7638 thumbprint for a known-answer test.
var Thumbprint = thumbprint
