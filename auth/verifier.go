package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
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

// ErrOrgNotAllowed is wrapped, together with ErrInvalidToken, by the
// rejection of an otherwise valid token whose organisation is not in
// Config.AllowedOrgs, so that a caller may map it apart.
var ErrOrgNotAllowed = errors.New("organisation not allowed")

// invalidTokenError is a rejection with a short reason. The reason is chosen
// here, never copied from the token, so logging the error cannot leak it.
type invalidTokenError struct {
	reason string
	// also is a second sentinel it wraps, or nil.
	also error
}

func (e *invalidTokenError) Error() string { return ErrInvalidToken.Error() + ": " + e.reason }

func (e *invalidTokenError) Unwrap() []error {
	if e.also == nil {
		return []error{ErrInvalidToken}
	}
	return []error{ErrInvalidToken, e.also}
}

func reject(reason string) error { return &invalidTokenError{reason: reason} }

// Config configures a Verifier.
type Config struct {
	Issuers []IssuerConfig
	// AllowedOrgs, when not empty, lists the ODS codes whose callers may
	// connect; a valid token naming any other organisation is rejected with
	// ErrOrgNotAllowed. Empty allows every organisation the issuers vouch for.
	AllowedOrgs []string
	// Leeway is the clock skew allowed on exp and nbf; zero means DefaultLeeway.
	Leeway time.Duration
	// MaxTokenBytes bounds the token size; zero means DefaultMaxTokenBytes.
	MaxTokenBytes int
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// Logger receives JWKS refresh failures; nil means slog.Default().
	Logger *slog.Logger
}

// Verifier checks bearer JWTs from the configured issuers. It is safe for
// concurrent use.
type Verifier struct {
	maxTokenBytes int
	parser        *jwt.Parser
	issuers       map[string]*issuer
	// allowedOrgs is nil when every organisation is allowed.
	allowedOrgs map[string]bool
	// stop ends the background refresh of JWKS URLs.
	stop context.CancelFunc
	// keyChanges counts changes to fetched key sets; see KeysVersion.
	keyChanges atomic.Uint64
}

// NewVerifier builds a Verifier. It fails if there are no issuers, if an
// issuer is misconfigured, if a JWKS (given, or fetched once from its URL
// now) has no usable RS256/ES256 key, or if an allowed organisation is not
// an ODS code, so a bad configuration stops the server at start rather than
// rejecting every call. Call Close to stop refreshing JWKS URLs.
func NewVerifier(cfg Config) (_ *Verifier, err error) {
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			stop()
		}
	}()
	v := &Verifier{
		maxTokenBytes: cfg.MaxTokenBytes,
		parser: jwt.NewParser(
			jwt.WithValidMethods(allowedAlgs),
			jwt.WithExpirationRequired(),
			// An iat in the future (beyond the leeway) is a broken or
			// forged issuer clock.
			jwt.WithIssuedAt(),
			// One encoding per token: no set unused bits in the last
			// base64url character (padding is refused by default).
			jwt.WithStrictDecoding(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
		issuers: make(map[string]*issuer, len(cfg.Issuers)),
		stop:    stop,
	}
	for _, ic := range cfg.Issuers {
		if ic.Issuer == "" || ic.Audience == "" {
			return nil, errors.New("auth: issuer and audience are required")
		}
		if _, dup := v.issuers[ic.Issuer]; dup {
			return nil, fmt.Errorf("auth: issuer %q configured twice", ic.Issuer)
		}
		iss, err := newIssuer(ctx, ic, cfg.Logger, &v.keyChanges)
		if err != nil {
			return nil, fmt.Errorf("auth: issuer %q: %w", ic.Issuer, err)
		}
		v.issuers[ic.Issuer] = iss
		if len(cfg.Issuers) > 1 && len(ic.OrgTypes) == 0 {
			// Then any one of the issuers can vouch for any organisation.
			cfg.Logger.Warn("trusted issuer may vouch for both NHS and council organisations; set its org types (org_types in the trust file)", "issuer", ic.Issuer)
		}
	}
	if v.allowedOrgs, err = odsSet(cfg.AllowedOrgs); err != nil {
		return nil, fmt.Errorf("auth: allowed organisation %w", err)
	}
	return v, nil
}

// KeysVersion changes whenever a JWKS URL refresh changes an issuer's
// signing keys (a key dropped, added or replaced). A cache of verified
// tokens remembers it with each entry and drops entries from before a
// change, so a key the issuer withdrew stops working at its next refresh.
func (v *Verifier) KeysVersion() uint64 { return v.keyChanges.Load() }

// Close stops the background refresh of JWKS URLs. Verify keeps working on
// the keys already held. It is safe to call more than once.
func (v *Verifier) Close() { v.stop() }

// Verify checks token and returns the caller it names. Every rejection wraps
// ErrInvalidToken. ctx bounds the refetch of a JWKS URL that a token with an
// unknown kid may trigger.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	// Checked before parsing so an oversized token costs no decoding.
	if len(token) > v.maxTokenBytes {
		return nil, reject("token too large")
	}
	if !compactJWS(token) {
		return nil, reject("malformed token")
	}
	var claims tokenClaims
	var iss *issuer
	tok, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		// The unverified iss only picks whose keys to try; a token naming
		// issuer B still needs a valid signature from one of B's keys.
		if err := v.checkHeader(t); err != nil {
			return nil, err
		}
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
	p, err := iss.claims.principal(&claims)
	if err != nil {
		return nil, err
	}
	if v.allowedOrgs != nil && !v.allowedOrgs[p.Org] {
		return nil, &invalidTokenError{reason: ErrOrgNotAllowed.Error(), also: ErrOrgNotAllowed}
	}
	return p, nil
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
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reject("token used before issued")
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

// compactJWS reports whether token has only the characters of the JWS
// compact serialisation: base64url without padding, and dots. The parser
// checks the rest, but encoding/base64 skips CR and LF, which would let
// one token be written many ways.
func compactJWS(token string) bool {
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// checkHeader refuses a JOSE header that asks for more than careplan
// does, or that readers could read differently. It runs before any key is
// looked up.
func (v *Verifier) checkHeader(t *jwt.Token) error {
	// The parser has decoded this segment once already; the library keeps
	// only the map, which cannot show a repeated name.
	head, _, _ := strings.Cut(t.Raw, ".")
	raw, err := v.parser.DecodeSegment(head)
	if err != nil || !uniqueMembers(raw) {
		return reject("duplicate header parameter")
	}
	// RFC 7515 section 4.1.11: a verifier must refuse extensions listed
	// in crit that it does not understand, and careplan understands none.
	if _, ok := t.Header["crit"]; ok {
		return reject("unsupported critical header")
	}
	// b64 (RFC 7797) and zip (JWE only) change what the payload bytes
	// mean; a token that uses them is not one this verifier can read.
	for _, name := range []string{"b64", "zip"} {
		if _, ok := t.Header[name]; ok {
			return reject("unsupported header parameter")
		}
	}
	if !isStringOrAbsent(t.Header, jwkset.HeaderKID) {
		return reject("bad kid")
	}
	if !isStringOrAbsent(t.Header, "typ") {
		return reject("bad typ")
	}
	// jwk, jku, x5u and x5c are ignored: keys come only from the issuer's
	// configured JWKS (see issuer.key).
	return nil
}

func isStringOrAbsent(header map[string]any, name string) bool {
	v, ok := header[name]
	if !ok {
		return true
	}
	_, isString := v.(string)
	return isString
}
