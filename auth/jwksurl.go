package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/time/rate"
)

// Defaults for the zero values in IssuerConfig when keys come from JWKSURL.
const (
	DefaultRefreshInterval    = time.Hour
	DefaultMinRefreshInterval = time.Minute
)

// jwksFetchTimeout bounds one fetch of a JWKS URL. It also bounds how long a
// token with an unknown kid waits for the refresh rate limiter: when the
// next refresh is further off than this, the token is rejected at once.
const jwksFetchTimeout = 10 * time.Second

// maxRedirects matches net/http's default policy, which a CheckRedirect
// replaces.
const maxRedirects = 10

// CheckJWKSURL reports why raw cannot be a JWKS URL. Only https is accepted:
// whoever can change the keys in transit can mint any caller. NewVerifier
// runs it; it is exported so a configuration loader can point at the line
// at fault.
func CheckJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("JWKS URL is not a URL: %w", err)
	case u.Scheme != "https":
		return fmt.Errorf("JWKS URL %q must use https", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("JWKS URL %q has no host", u.Redacted())
	case u.User != nil:
		// It would end up in logs.
		return fmt.Errorf("JWKS URL %q must not carry credentials", u.Redacted())
	}
	return nil
}

// remoteKeys fetches ic.JWKSURL once, failing if that fails so that a bad
// URL stops the server at start, and returns the store that jwkset keeps
// fresh: refetched every RefreshInterval until ctx ends, and on a token with
// an unknown kid at most once per MinRefreshInterval. A failed refetch is
// logged and keeps the last good keys.
func remoteKeys(ctx context.Context, ic IssuerConfig, log *slog.Logger, changes *atomic.Uint64) (jwkset.Storage, error) {
	if ic.RefreshInterval < 0 || ic.MinRefreshInterval < 0 {
		return nil, errors.New("negative JWKS refresh interval")
	}
	fetched, err := jwkset.NewStorageFromHTTP(ic.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:          httpsOnly(ic.HTTPClient),
		Ctx:             ctx,
		HTTPTimeout:     jwksFetchTimeout,
		RefreshInterval: cmp.Or(ic.RefreshInterval, DefaultRefreshInterval),
		RefreshErrorHandler: func(ctx context.Context, err error) {
			log.WarnContext(ctx, "auth: JWKS refresh failed; keeping the last good keys",
				"issuer", ic.Issuer, "url", ic.JWKSURL, "error", err)
		},
		Storage: newUsableStorage(changes),
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", ic.JWKSURL, err)
	}
	return jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{ic.JWKSURL: fetched},
		RateLimitWaitMax:  jwksFetchTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cmp.Or(ic.MinRefreshInterval, DefaultMinRefreshInterval)), 1),
	})
}

// httpsOnly returns a copy of c, or of a default client, that will not
// follow a redirect off https, so keys are never fetched in the clear.
func httpsOnly(c *http.Client) *http.Client {
	out := &http.Client{}
	if c != nil {
		*out = *c
	}
	next := out.CheckRedirect
	out.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		switch {
		case req.URL.Scheme != "https":
			return fmt.Errorf("refusing JWKS redirect to %s: not https", req.URL.Redacted())
		case next != nil:
			return next(req, via)
		case len(via) >= maxRedirects:
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return out
}
