package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/careplan/careplan/auth"
)

const validHeader = `{"alg":"ES256","typ":"JWT","kid":"a-es"}`

// rawPayload is the JSON payload of a valid token from issuer A, with
// members changed: set is name, raw JSON value pairs, each replacing the
// member of that name in place or joining at the end; an empty value drops
// the member.
func rawPayload(set ...string) string {
	members := [][2]string{
		{"iss", `"` + issA + `"`},
		{"sub", `"user-1"`},
		{"aud", `["` + audience + `"]`},
		{"org", `"RX1"`},
		{"org_type", `"nhs"`},
		{"roles", `["careplan:read"]`},
		{"iat", fmt.Sprint(now.Unix())},
		{"exp", fmt.Sprint(now.Add(5 * time.Minute).Unix())},
	}
	for i := 0; i+1 < len(set); i += 2 {
		found := false
		for j := range members {
			if members[j][0] == set[i] {
				members[j][1], found = set[i+1], true
			}
		}
		if !found {
			members = append(members, [2]string{set[i], set[i+1]})
		}
	}
	var parts []string
	for _, m := range members {
		if m[1] != "" {
			parts = append(parts, `"`+m[0]+`":`+m[1])
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// signRaw signs header and payload as given with s's key.
func signRaw(t *testing.T, s *auth.Signer, header, payload string) string {
	t.Helper()
	tok, err := s.SignRaw([]byte(header), []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestVerifyIsStrict: what RFC 7515 and RFC 7519 say must (or, for a token
// that must mean one thing to every reader, should) be refused is refused,
// and what they allow still passes.
func TestVerifyIsStrict(t *testing.T) {
	f := newFixture(t)
	exp := fmt.Sprint(now.Add(5 * time.Minute).Unix())
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// attackerJWK is the attacker's public key as a JWK, for a header that
	// embeds it ("jwk") and hopes the verifier uses it.
	attackerJWK := func() string {
		b := func(n []byte) string { return base64.RawURLEncoding.EncodeToString(n) }
		pub, err := attacker.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, b(pub[1:33]), b(pub[33:]))
	}()
	// byAttacker signs with the attacker's own key.
	byAttacker := func(header string) func(*testing.T) string {
		return func(t *testing.T) string {
			input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." +
				base64.RawURLEncoding.EncodeToString([]byte(rawPayload()))
			sig, err := jwt.SigningMethodES256.Sign(input, attacker)
			if err != nil {
				t.Fatal(err)
			}
			return input + "." + base64.RawURLEncoding.EncodeToString(sig)
		}
	}
	signed := func(header, payload string) func(*testing.T) string {
		return func(t *testing.T) string { return signRaw(t, f.aES, header, payload) }
	}
	claims := func(set ...string) func(*testing.T) string { return signed(validHeader, rawPayload(set...)) }
	header := func(h string) func(*testing.T) string { return signed(h, rawPayload()) }
	// edit changes the text of a valid token.
	edit := func(change func(string) string) func(*testing.T) string {
		return func(t *testing.T) string { return change(signRaw(t, f.aES, validHeader, rawPayload())) }
	}

	tests := []struct {
		name  string
		token func(*testing.T) string
		// wantErr is the reason; empty means accepted.
		wantErr string
	}{
		{name: "valid raw token", token: claims()},
		{name: "aud a single string", token: claims("aud", `"`+audience+`"`)},
		{name: "exp in exponent form", token: claims("exp", "1.7723664e9")},
		{name: "exp null means absent", token: claims("exp", "null"), wantErr: "missing exp"},
		{name: "typ at+jwt", token: header(`{"alg":"ES256","typ":"at+jwt","kid":"a-es"}`)},
		{name: "no typ", token: header(`{"alg":"ES256","kid":"a-es"}`)},
		{name: "roles null means none", token: claims("roles", "null")},
		{name: "iat in the future within leeway", token: claims("iat", fmt.Sprint(now.Add(59*time.Second).Unix()))},
		{name: "an unknown header parameter is ignored", token: header(`{"alg":"ES256","kid":"a-es","x-vendor":1}`)},

		// RFC 7515 section 4.1.11: an extension the verifier does not
		// understand, and careplan understands none.
		{name: "crit with an unknown extension", token: header(`{"alg":"ES256","kid":"a-es","crit":["exp-ext"],"exp-ext":1}`), wantErr: "unsupported critical header"},
		{name: "crit empty", token: header(`{"alg":"ES256","kid":"a-es","crit":[]}`), wantErr: "unsupported critical header"},
		{name: "crit not an array", token: header(`{"alg":"ES256","kid":"a-es","crit":"b64"}`), wantErr: "unsupported critical header"},
		{name: "b64 false, critical", token: header(`{"alg":"ES256","kid":"a-es","b64":false,"crit":["b64"]}`), wantErr: "unsupported critical header"},
		{name: "b64 false", token: header(`{"alg":"ES256","kid":"a-es","b64":false}`), wantErr: "unsupported header parameter"},
		{name: "zip", token: header(`{"alg":"ES256","kid":"a-es","zip":"DEF"}`), wantErr: "unsupported header parameter"},
		{name: "kid a number", token: header(`{"alg":"ES256","kid":1}`), wantErr: "bad kid"},
		{name: "kid an array", token: header(`{"alg":"ES256","kid":["a-es"]}`), wantErr: "bad kid"},
		{name: "typ a number", token: header(`{"alg":"ES256","typ":1,"kid":"a-es"}`), wantErr: "bad typ"},
		{name: "alg a number", token: header(`{"alg":1,"kid":"a-es"}`), wantErr: "unsupported alg"},
		{name: "header twice names kid", token: header(`{"alg":"ES256","kid":"b-es","kid":"a-es"}`), wantErr: "duplicate header parameter"},
		{name: "header twice names alg", token: header(`{"alg":"none","alg":"ES256","kid":"a-es"}`), wantErr: "duplicate header parameter"},
		{name: "header not an object", token: header(`["ES256"]`), wantErr: "malformed token"},

		// Keys named or carried by the token are never used.
		{name: "embedded jwk under a trusted kid", token: byAttacker(`{"alg":"ES256","kid":"a-es","jwk":` + attackerJWK + `}`), wantErr: "bad signature"},
		{name: "embedded jwk under its own kid", token: byAttacker(`{"alg":"ES256","kid":"mine","jwk":` + attackerJWK + `}`), wantErr: "unknown signing key"},
		{name: "jku under a trusted kid", token: byAttacker(`{"alg":"ES256","kid":"a-es","jku":"https://evil.example/jwks"}`), wantErr: "bad signature"},
		{name: "x5u under a trusted kid", token: byAttacker(`{"alg":"ES256","kid":"a-es","x5u":"https://evil.example/cert"}`), wantErr: "bad signature"},

		// RFC 7519 section 2: NumericDate is a JSON number.
		{name: "exp a string", token: claims("exp", `"9999999999"`), wantErr: "bad exp"},
		{name: "exp true", token: claims("exp", "true"), wantErr: "bad exp"},
		{name: "exp an object", token: claims("exp", "{}"), wantErr: "bad exp"},
		{name: "nbf a string", token: claims("nbf", `"0"`), wantErr: "bad nbf"},
		{name: "iat a string", token: claims("iat", `"0"`), wantErr: "bad iat"},
		// Out of range: int64(1e300) differs between CPUs (expired on amd64,
		// far future on arm64), so such dates are refused outright.
		{name: "exp 1e300", token: claims("exp", "1e300"), wantErr: "bad exp"},
		{name: "exp past int64 seconds", token: claims("exp", "9300000000000000000"), wantErr: "bad exp"},
		{name: "exp after year 9999", token: claims("exp", "253402300800"), wantErr: "bad exp"},
		{name: "exp negative", token: claims("exp", "-1"), wantErr: "bad exp"},
		{name: "iat in the future beyond leeway", token: claims("iat", fmt.Sprint(now.Add(61*time.Second).Unix())), wantErr: "token used before issued"},
		// Claim names are case-sensitive (RFC 7519 section 4); encoding/json
		// alone would read "EXP" as exp.
		{name: "EXP is not exp", token: claims("exp", "", "EXP", exp), wantErr: "missing exp"},
		{name: "Exp a string beside exp", token: claims("Exp", `"x"`)},
		{name: "ISS is not iss", token: claims("iss", "", "ISS", `"`+issA+`"`), wantErr: "unknown issuer"},

		// One member per name, so that no reader of the token (a gateway,
		// a log) sees other claims than careplan does.
		{name: "exp twice", token: signed(validHeader, strings.TrimSuffix(rawPayload(), "}")+`,"exp":9999999999}`), wantErr: "duplicate claim"},
		{name: "org twice", token: signed(validHeader, `{"org":"EVIL1",`+strings.TrimPrefix(rawPayload(), "{")), wantErr: "duplicate claim"},
		{name: "payload not an object", token: signed(validHeader, `[1]`), wantErr: "malformed token"},

		{name: "aud a number", token: claims("aud", "1"), wantErr: "malformed token"},
		{name: "aud an array of numbers", token: claims("aud", "[1]"), wantErr: "malformed token"},
		{name: "aud an object", token: claims("aud", `{"careplan":true}`), wantErr: "malformed token"},
		{name: "iss a number", token: claims("iss", "1"), wantErr: "malformed token"},
		{name: "sub a number", token: claims("sub", "1"), wantErr: "malformed token"},
		{name: "sub null", token: claims("sub", "null"), wantErr: "missing sub"},

		// strings.ToUpper maps some non-ASCII letters to ASCII ones.
		{name: "org with a dotless i", token: claims("org", `"rx\u0131"`), wantErr: "bad org"},
		{name: "org with a long s", token: claims("org", `"RX\u017f"`), wantErr: "bad org"},
		{name: "org with a Kelvin sign", token: claims("org", `"\u212a1"`), wantErr: "bad org"},
		{name: "org with a trailing newline", token: claims("org", `"RX1\n"`), wantErr: "bad org"},
		{name: "org with a leading space", token: claims("org", `" RX1"`), wantErr: "bad org"},
		{name: "org with a NUL", token: claims("org", `"RX1\u0000"`), wantErr: "bad org"},
		{name: "org a number", token: claims("org", "1"), wantErr: "bad org"},
		{name: "org null", token: claims("org", "null"), wantErr: "missing org"},
		{name: "org_type upper case", token: claims("org_type", `"NHS"`), wantErr: "bad org_type"},
		{name: "org_type with a NUL", token: claims("org_type", `"nhs\u0000"`), wantErr: "bad org_type"},
		{name: "org_type with a dotless i", token: claims("org_type", `"counc\u0131l"`), wantErr: "bad org_type"},
		{name: "org_type a number", token: claims("org_type", "1"), wantErr: "bad org_type"},
		{name: "roles of numbers", token: claims("roles", "[1]"), wantErr: "bad roles"},
		{name: "roles an object", token: claims("roles", `{"careplan:admin":true}`), wantErr: "bad roles"},

		// The compact serialisation is base64url without padding, and
		// nothing else (encoding/base64 alone skips CR and LF).
		{name: "leading space", token: edit(func(s string) string { return " " + s }), wantErr: "malformed token"},
		{name: "trailing space", token: edit(func(s string) string { return s + " " }), wantErr: "malformed token"},
		{name: "trailing newline", token: edit(func(s string) string { return s + "\n" }), wantErr: "malformed token"},
		{name: "CRLF inside", token: edit(func(s string) string { return s[:10] + "\r\n" + s[10:] }), wantErr: "malformed token"},
		{name: "NUL at the end", token: edit(func(s string) string { return s + "\x00" }), wantErr: "malformed token"},
		{name: "padded signature", token: edit(func(s string) string { return s + "==" }), wantErr: "malformed token"},
		{name: "standard base64 alphabet", token: edit(func(s string) string {
			return strings.NewReplacer("-", "+", "_", "/").Replace(s)
		}), wantErr: "malformed token"},
		{name: "signature with non-zero trailing bits", token: edit(func(s string) string {
			// 64 signature bytes end in a two-character group whose
			// second character carries 4 unused bits; setting one
			// decodes to the same bytes unless decoding is strict.
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			i := strings.IndexByte(alphabet, s[len(s)-1])
			return s[:len(s)-1] + string(alphabet[i^1])
		}), wantErr: "malformed token"},
		{name: "four segments", token: edit(func(s string) string { return s + ".e30" }), wantErr: "malformed token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := tc.token(t)
			got, err := f.v.Verify(context.Background(), token)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got.Org != "RX1" {
					t.Fatalf("Verify = %+v", got)
				}
				return
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", got, err)
			}
			if !strings.HasSuffix(err.Error(), ": "+tc.wantErr) {
				t.Errorf("Verify error = %q, want reason %q", err, tc.wantErr)
			}
		})
	}
}

// TestODSCodesAreASCII: the configuration's ODS codes are checked as the
// token's are, before upper-casing.
func TestODSCodesAreASCII(t *testing.T) {
	for _, code := range []string{"rx\u0131", "RX\u017f", "RX1\n"} {
		if err := auth.CheckODSCodes([]string{code}); err == nil {
			t.Errorf("CheckODSCodes(%q) = nil, want an error", code)
		}
	}
	if err := auth.CheckODSCodes([]string{"rx1", "E09000033"}); err != nil {
		t.Errorf("CheckODSCodes: %v", err)
	}
}

// TestRawPayloadMatchesMint: the raw payload is what a Signer writes, so
// the cases above differ from a real token only where they say.
func TestRawPayloadMatchesMint(t *testing.T) {
	var got, want map[string]any
	if err := json.Unmarshal([]byte(rawPayload()), &got); err != nil {
		t.Fatal(err)
	}
	tok := mint(t, mustSigner(t, auth.NewSigner, "a-es"), func(c *auth.Claims) { c.Roles = []string{auth.RoleRead} })
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("raw payload %v, Mint writes %v", got, want)
	}
}
