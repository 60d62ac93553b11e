package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Defaults for the zero values in Config.
const (
	DefaultLeeway        = 60 * time.Second
	DefaultMaxTokenBytes = 8192
)

// ErrInvalidToken is wrapped by every rejection from Verify. The server maps
// it to UNAUTHENTICATED; the wrapping error's text says what was wrong.
var ErrInvalidToken = errors.New("invalid token")

// invalidTokenError is a rejection with a short reason. The reason is chosen
// here, never copied from the token, so logging the error cannot leak it.
type invalidTokenError struct{ reason string }

func (e *invalidTokenError) Error() string { return ErrInvalidToken.Error() + ": " + e.reason }
func (e *invalidTokenError) Unwrap() error { return ErrInvalidToken }

func reject(reason string) error { return &invalidTokenError{reason: reason} }

// IssuerConfig is one trusted token issuer.
type IssuerConfig struct {
	// Issuer is the exact "iss" value of its tokens.
	Issuer string
	// Audience must appear in the token's "aud".
	Audience string
	// JWKS is the issuer's public JWK Set, as JSON.
	JWKS []byte
}

// Config configures a Verifier.
type Config struct {
	Issuers []IssuerConfig
	// Leeway is the clock skew allowed on exp and nbf; zero means DefaultLeeway.
	Leeway time.Duration
	// MaxTokenBytes bounds the token size; zero means DefaultMaxTokenBytes.
	MaxTokenBytes int
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// issuer holds what one issuer's tokens are checked against. keys is the only
// source of signing keys, so a JWKS fetched from a URL and refreshed (e.g.
// keyfunc.NewDefaultOverrideCtx) can replace the static set without touching
// Verify.
type issuer struct {
	audience string
	keys     keyfunc.Keyfunc
}

// Verifier checks bearer JWTs from the configured issuers. It is safe for
// concurrent use.
type Verifier struct {
	maxTokenBytes int
	parser        *jwt.Parser
	issuers       map[string]*issuer
}

// NewVerifier builds a Verifier. It fails if there are no issuers, or if an
// issuer's JWKS is not valid JSON or has no usable RS256/ES256 key, so a bad
// configuration stops the server at start rather than rejecting every call.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("auth: no trusted issuers configured")
	}
	if cfg.Leeway < 0 || cfg.MaxTokenBytes < 0 {
		return nil, errors.New("auth: negative leeway or token size")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.MaxTokenBytes == 0 {
		cfg.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{
		maxTokenBytes: cfg.MaxTokenBytes,
		parser: jwt.NewParser(
			jwt.WithValidMethods(allowedAlgs),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
		issuers: make(map[string]*issuer, len(cfg.Issuers)),
	}
	for _, ic := range cfg.Issuers {
		if ic.Issuer == "" || ic.Audience == "" {
			return nil, errors.New("auth: issuer and audience are required")
		}
		if _, dup := v.issuers[ic.Issuer]; dup {
			return nil, fmt.Errorf("auth: issuer %q configured twice", ic.Issuer)
		}
		keys, err := staticKeys(ic.JWKS)
		if err != nil {
			return nil, fmt.Errorf("auth: issuer %q: %w", ic.Issuer, err)
		}
		v.issuers[ic.Issuer] = &issuer{audience: ic.Audience, keys: keys}
	}
	return v, nil
}

// Verify checks token and returns the caller it names. Every rejection wraps
// ErrInvalidToken. ctx bounds key lookups, which may go remote once JWKS URLs
// are supported.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	// Checked before parsing so an oversized token costs no decoding.
	if len(token) > v.maxTokenBytes {
		return nil, reject("token too large")
	}
	var claims tokenClaims
	var iss *issuer
	tok, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		// The unverified iss only picks whose keys to try; a token naming
		// issuer B still needs a valid signature from one of B's keys.
		iss = v.issuers[claims.Issuer]
		if iss == nil {
			return nil, reject("unknown issuer")
		}
		return iss.key(ctx, t)
	})
	if err != nil {
		return nil, rejection(tok, err)
	}
	if !slices.Contains(claims.Audience, iss.audience) {
		return nil, reject("wrong audience")
	}
	return claims.principal()
}

// key returns the issuer's key named by the token's kid. The kid is required:
// without it the keyfunc library would try every key in the set.
func (iss *issuer) key(ctx context.Context, t *jwt.Token) (any, error) {
	if kid, _ := t.Header[jwkset.HeaderKID].(string); kid == "" {
		return nil, reject("missing kid")
	}
	key, err := iss.keys.KeyfuncCtx(ctx)(t)
	switch {
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return nil, reject("unknown signing key")
	case err != nil:
		// Stored keys all carry an alg, so with a static JWKS the only other
		// failure is a token using a key with an alg it is not meant for.
		return nil, reject("signing key does not match alg")
	}
	return key, nil
}

// rejection turns a JWT library error into a short reason.
func rejection(tok *jwt.Token, err error) error {
	var own *invalidTokenError
	if errors.As(err, &own) {
		return own
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reject("malformed token")
	case !slices.Contains(allowedAlgs, headerAlg(tok)):
		return reject("unsupported alg")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reject("bad signature")
	case errors.Is(err, jwt.ErrTokenExpired):
		return reject("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reject("token not yet valid")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// exp is the only claim the parser is told to require.
		return reject("missing exp")
	}
	return reject("unverifiable token")
}

func headerAlg(tok *jwt.Token) string {
	if tok == nil {
		return ""
	}
	alg, _ := tok.Header["alg"].(string)
	return alg
}
