package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// IssuerConfig is one trusted token issuer.
type IssuerConfig struct {
	// Issuer is the exact "iss" value of its tokens.
	Issuer string
	// Audience must appear in the token's "aud".
	Audience string

	// The issuer's signing keys come from exactly one of JWKS and JWKSURL.

	// JWKS is the issuer's public JWK Set, as JSON.
	JWKS []byte
	// JWKSURL is an https URL serving the issuer's JWK Set (see
	// CheckJWKSURL). NewVerifier fails if the first fetch fails; later
	// failures are logged and keep the last good keys.
	JWKSURL string
	// HTTPClient fetches JWKSURL; nil means a plain client. Either way a
	// redirect off https is refused. Tests set it to trust their TLS server.
	HTTPClient *http.Client
	// RefreshInterval is how often JWKSURL is refetched in the background;
	// zero means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MinRefreshInterval spaces the refetches that a token with an unknown
	// kid triggers (an issuer rotating to a new key), so that tokens with
	// made-up kids cannot hammer the issuer; zero means
	// DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration

	// Claims names the claims carrying org, org type and roles.
	Claims ClaimNames
	// RoleMap maps a value of the roles claim, such as the national role
	// code "R8000", to the careplan roles it grants. Careplan role names in
	// the claim count as themselves; other values are dropped.
	RoleMap map[string][]string
	// OrgTypeMap maps a value of the org type claim, such as "NHS Trust", to
	// "nhs" or "council", for issuers that do not say those words.
	OrgTypeMap map[string]string
	// OrgTypes, when not empty, lists the organisation types ("nhs",
	// "council") this issuer may vouch for. A token asserting another is
	// rejected, so that a council's identity provider cannot issue a token
	// that claims an NHS trust, and with it the trust's part of a plan.
	OrgTypes []string
	// Orgs, when not empty, lists the ODS codes this issuer may vouch for.
	Orgs []string
}

// issuer holds what one issuer's tokens are checked against. keys is the only
// source of signing keys: a fixed set, or jwkset's client for a JWKS URL.
type issuer struct {
	audience string
	keys     jwkset.Storage
	claims   claimMapping
}

// newIssuer checks ic and loads its keys; ctx ends the background refresh
// of a JWKS URL, and each change to the fetched keys bumps changes.
func newIssuer(ctx context.Context, ic IssuerConfig, log *slog.Logger, changes *atomic.Uint64) (*issuer, error) {
	claims, err := newClaimMapping(ic)
	if err != nil {
		return nil, err
	}
	var keys jwkset.Storage
	switch {
	case (len(ic.JWKS) == 0) == (ic.JWKSURL == ""):
		return nil, errors.New("set exactly one of JWKS and JWKSURL")
	case ic.JWKSURL != "":
		if err := CheckJWKSURL(ic.JWKSURL); err != nil {
			return nil, err
		}
		keys, err = remoteKeys(ctx, ic, log, changes)
	default:
		keys, err = staticKeys(ic.JWKS)
	}
	if err != nil {
		return nil, err
	}
	return &issuer{audience: ic.Audience, keys: keys, claims: claims}, nil
}

// key returns the issuer's key named by the token's kid. The kid is required,
// so no token gets its signature tried against every key.
func (iss *issuer) key(ctx context.Context, t *jwt.Token) (any, error) {
	kid, _ := t.Header[jwkset.HeaderKID].(string)
	if kid == "" {
		return nil, reject("missing kid")
	}
	jwk, err := iss.keys.KeyRead(ctx, kid)
	if err != nil {
		// Not found, even after any refresh the rate limit allowed. A
		// failed refresh has been logged with its cause.
		return nil, reject("unknown signing key")
	}
	// Every stored key carries the one alg it is for (see usableKeys), and
	// the parser has already limited t.Method to allowedAlgs.
	if string(jwk.Marshal().ALG) != t.Method.Alg() {
		return nil, reject("signing key does not match alg")
	}
	return jwk.Key(), nil
}
