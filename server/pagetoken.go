package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"

	"github.com/careplan/careplan/validate"
)

// pageToken is opaque to clients (AIP-158). It carries where the last page
// ended and a digest of the request's filters, so a token cannot be reused
// with different filters.
type pageToken struct {
	After  string `json:"a"`
	Filter []byte `json:"f"`
}

func filterDigest(filter string) []byte {
	sum := sha256.Sum256([]byte(filter))
	return sum[:8]
}

// encodePageToken returns "" when there is no next page.
func encodePageToken(after, filter string) string {
	if after == "" {
		return ""
	}
	b, _ := json.Marshal(pageToken{After: after, Filter: filterDigest(filter)})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(token, filter string) (string, error) {
	if token == "" {
		return "", nil
	}
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.After == "" || string(t.Filter) != string(filterDigest(filter)) {
		return "", invalid(validate.FieldViolation{Field: "page_token", Description: "invalid page token, or one from a request with other filters"})
	}
	return t.After, nil
}
