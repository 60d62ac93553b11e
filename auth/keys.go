package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// allowedAlgs is the whole list of algorithms a token may use. Naming them,
// rather than trusting the token's "alg", is what defeats "alg: none" and
// HS256 keyed with a public key.
var allowedAlgs = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}

// minRSABits is the smallest RSA modulus trusted for RS256.
const minRSABits = 2048

// signingMethod returns the one algorithm this service pairs with pub. Pinning
// each key to a single algorithm means a token cannot choose how its key is used.
func signingMethod(pub crypto.PublicKey) (jwt.SigningMethod, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key shorter than %d bits", minRSABits)
		}
		return jwt.SigningMethodRS256, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("EC key not on P-256")
		}
		return jwt.SigningMethodES256, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

// publicJWK describes pub as a signature-verification JWK with kid and alg
// set. The signer publishes keys with it and the verifier stores keys through
// it, so both agree on what a usable key looks like.
func publicJWK(pub crypto.PublicKey, kid string) (jwkset.JWK, error) {
	method, err := signingMethod(pub)
	if err != nil {
		return jwkset.JWK{}, err
	}
	return jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{
			ALG: jwkset.ALG(method.Alg()),
			KID: kid,
			USE: jwkset.UseSig,
		},
	})
}

// errNoUsableKey is why a JWK Set is refused, at start or on a refresh.
var errNoUsableKey = errors.New("JWKS has no usable RS256 or ES256 signing key with a kid")

// usableKeys returns the public RS256 and ES256 signing keys with a kid in
// set, each pinned to its one alg. Other keys are skipped, as RFC 7517
// section 5 asks, so a symmetric or private key in a set can never be used.
// Static and fetched sets both pass through it.
func usableKeys(set []jwkset.JWKMarshal) []jwkset.JWK {
	var keys []jwkset.JWK
	for _, m := range set {
		if m.KID == "" || (m.USE != "" && m.USE != jwkset.UseSig) {
			continue
		}
		// Private: false drops any private or symmetric material.
		parsed, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		jwk, err := publicJWK(parsed.Key(), m.KID)
		if err != nil || (m.ALG != "" && m.ALG != jwk.Marshal().ALG) {
			continue
		}
		keys = append(keys, jwk)
	}
	return keys
}

// usableStorage holds an issuer's keys, and lets only usable ones in.
// jwkset's HTTP client refreshes a fetched set through KeyReplaceAll, so the
// filter applies on every refresh too; and a set with no usable key is
// refused, which leaves the last good keys in place (an endpoint serving no
// usable key is broken, not rotating). KeyWrite is not filtered, and nothing
// calls it.
type usableStorage struct {
	*jwkset.MemoryJWKSet
	// changes, when not nil, is bumped whenever the stored keys change, so
	// that a cache of verified tokens can drop what a removed key vouched
	// for (see Verifier.KeysVersion).
	changes *atomic.Uint64

	mu   sync.Mutex
	last string // fingerprint of the stored keys
}

func newUsableStorage(changes *atomic.Uint64) *usableStorage {
	return &usableStorage{MemoryJWKSet: jwkset.NewMemoryStorage(), changes: changes}
}

func (s *usableStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	set := make([]jwkset.JWKMarshal, len(given))
	for i, k := range given {
		set[i] = k.Marshal()
	}
	return s.replace(ctx, set)
}

func (s *usableStorage) replace(ctx context.Context, set []jwkset.JWKMarshal) error {
	keys := usableKeys(set)
	if len(keys) == 0 {
		return errNoUsableKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, keys); err != nil {
		return err
	}
	// An hourly refresh usually brings the same keys: only a real change
	// should cost the token cache its entries.
	if fp := fingerprint(keys); fp != s.last {
		s.last = fp
		if s.changes != nil {
			s.changes.Add(1)
		}
	}
	return nil
}

// fingerprint identifies a key set by its public keys, in any order.
func fingerprint(keys []jwkset.JWK) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		b, err := json.Marshal(k.Marshal())
		if err != nil {
			// Cannot happen for a key usableKeys built; an unmatched
			// fingerprint only costs a cache refill.
			b = []byte(err.Error())
		}
		parts = append(parts, string(b))
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}

// staticKeys returns the key store for a fixed JWK Set.
func staticKeys(raw []byte) (jwkset.Storage, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("bad JWKS JSON: %w", err)
	}
	store := newUsableStorage(nil) // a fixed set never changes
	if err := store.replace(context.Background(), set.Keys); err != nil {
		return nil, err
	}
	return store, nil
}
