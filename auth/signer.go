package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Signer mints tokens that a Verifier trusting its JWKS accepts. It exists for
// the server's --dev mode and for tests elsewhere, which need real tokens to
// drive the real verification path; production tokens come from an identity
// provider.
type Signer struct {
	key    crypto.Signer // *ecdsa.PrivateKey or *rsa.PrivateKey
	method jwt.SigningMethod
	kid    string
}

// NewSigner returns an ES256 signer with a fresh P-256 key.
func NewSigner(kid string) (*Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newSigner(key, kid)
}

// NewRSASigner returns an RS256 signer with a fresh 2048-bit key.
func NewRSASigner(kid string) (*Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, minRSABits)
	if err != nil {
		return nil, err
	}
	return newSigner(key, kid)
}

func newSigner(key crypto.Signer, kid string) (*Signer, error) {
	if kid == "" {
		return nil, errors.New("auth: signer needs a kid; verifiers require one")
	}
	method, err := signingMethod(key.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, method: method, kid: kid}, nil
}

// KID is the key id written into each token header and the JWKS.
func (s *Signer) KID() string { return s.kid }

// JWKS returns the public JWK Set JSON to configure a Verifier with.
func (s *Signer) JWKS() ([]byte, error) { return JoinJWKS(s) }

// JoinJWKS returns one JWK Set with the public keys of all the signers, as
// an issuer publishes it while it rotates from one key to the next.
func JoinJWKS(signers ...*Signer) ([]byte, error) {
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, s := range signers {
		jwk, err := publicJWK(s.key.Public(), s.kid)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	return json.Marshal(set)
}

// Claims is what Mint puts in a token. Empty fields and zero times are left
// out, so tests can mint tokens that lack a claim.
type Claims struct {
	Issuer, Subject, Org, OrgType  string
	Audience                       []string
	Roles                          []string
	IssuedAt, NotBefore, ExpiresAt time.Time
	// Extra holds further claims by name, such as an issuer's own names for
	// org and roles (see ClaimNames). The fields above win over it.
	Extra map[string]any
}

// mintedClaims is the payload Mint writes. Its tags are careplan's own claim
// names, the defaults of ClaimNames.
type mintedClaims struct {
	jwt.RegisteredClaims
	Org     string         `json:"org,omitempty"`
	OrgType string         `json:"org_type,omitempty"`
	Roles   []string       `json:"roles,omitempty"`
	Extra   map[string]any `json:"-"`
}

// MarshalJSON writes the named claims over Extra.
func (c mintedClaims) MarshalJSON() ([]byte, error) {
	type named mintedClaims // without this method
	out, err := json.Marshal(named(c))
	if err != nil || len(c.Extra) == 0 {
		return out, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(out, &fields); err != nil {
		return nil, err
	}
	all := maps.Clone(c.Extra)
	for name, v := range fields {
		all[name] = v
	}
	return json.Marshal(all)
}

// Mint signs c with the signer's key and kid.
func (s *Signer) Mint(c Claims) (string, error) {
	tok := jwt.NewWithClaims(s.method, mintedClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   c.Subject,
			Audience:  c.Audience,
			IssuedAt:  numericDate(c.IssuedAt),
			NotBefore: numericDate(c.NotBefore),
			ExpiresAt: numericDate(c.ExpiresAt),
		},
		Org:     c.Org,
		OrgType: c.OrgType,
		Roles:   c.Roles,
		Extra:   c.Extra,
	})
	tok.Header[jwkset.HeaderKID] = s.kid
	return tok.SignedString(s.key)
}

// SignRaw signs header and payload exactly as given, with no checks, so
// that tests can make tokens Mint never writes (a crit header, a string
// exp, a duplicated claim) and show that a Verifier refuses them.
func (s *Signer) SignRaw(header, payload []byte) (string, error) {
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := s.method.Sign(input, s.key)
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func numericDate(t time.Time) *jwt.NumericDate {
	if t.IsZero() {
		return nil
	}
	return jwt.NewNumericDate(t)
}
