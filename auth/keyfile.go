package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/MicahParks/jwkset"
)

const pemPrivateKey = "PRIVATE KEY" // PKCS#8

// LoadOrCreateSigner returns the signer whose PKCS#8 PEM key is at path,
// creating an ES256 key there (file 0600, directory 0700) if there is none.
// The kid is the key's RFC 7638 thumbprint, so a dev server keeps accepting
// the tokens it minted before a restart.
func LoadOrCreateSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = createKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemPrivateKey {
		return nil, fmt.Errorf("auth: signing key %s: not a PKCS#8 PEM private key", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key %s: %w", path, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("auth: signing key %s: unsupported key type %T", path, parsed)
	}
	kid, err := thumbprint(key.Public())
	if err != nil {
		return nil, fmt.Errorf("auth: signing key %s: %w", path, err)
	}
	return newSigner(key, kid)
}

// createKeyFile writes a new P-256 key to path and returns its PEM.
func createKeyFile(path string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// O_EXCL: if another process created the key meanwhile, use theirs
	// rather than overwrite a key whose tokens may already be out.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return data, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of pub: SHA-256 over the
// required members, in lexicographic order, base64url-encoded.
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{})
	if err != nil {
		return "", err
	}
	m := jwk.Marshal()
	// Fields in lexicographic order; a key type's other members are empty.
	required, err := json.Marshal(struct {
		CRV string `json:"crv,omitempty"`
		E   string `json:"e,omitempty"`
		KTY string `json:"kty"`
		N   string `json:"n,omitempty"`
		X   string `json:"x,omitempty"`
		Y   string `json:"y,omitempty"`
	}{string(m.CRV), m.E, string(m.KTY), m.N, m.X, m.Y})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(required)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
