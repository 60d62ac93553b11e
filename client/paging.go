package client

import "errors"

// maxPageSize asks for the server's largest page (larger sizes are clamped
// to it), so following every page costs as few round trips as it allows.
const maxPageSize = 100

// errRepeatedToken stops a paging loop that would otherwise never end.
var errRepeatedToken = errors.New("client: server repeated its page token")

// forEachPage calls fetch with each page token in turn, starting with "",
// until fetch returns an empty next token or an error. It is the one paging
// loop behind History and AuditEvents (AIP-158).
func forEachPage(fetch func(token string) (next string, err error)) error {
	token := ""
	for {
		next, err := fetch(token)
		if err != nil || next == "" {
			return err
		}
		if next == token {
			return errRepeatedToken
		}
		token = next
	}
}
