package trustconfig

import (
	"errors"
	"fmt"
	"strings"

	"github.com/careplan/careplan/auth"
)

// DefaultAudience is the audience of an issuer that flags add without
// --audience: the server's own name.
const DefaultAudience = "careplan"

// Flags are the server's one-issuer command-line flags. Leave a field empty
// when its flag was not given on the command line (flag.FlagSet.Visit
// tells), so that a flag's default never overrides the file.
type Flags struct {
	// Issuer is --issuer: the issuer the other two flags are about.
	Issuer string
	// JWKS is --jwks: a JWK Set file, or an https URL (anything with
	// "://" is taken as a URL). A relative file is relative to the working
	// directory, not to the configuration file.
	JWKS string
	// Audience is --audience.
	Audience string
}

// ApplyFlags merges the one-issuer flags into f; for flags alone, apply them
// to a zero File. Flags win, and only ever about the one issuer --issuer
// names:
//
//   - If f lists that issuer, --jwks (when given) replaces its key source,
//     file or URL, and --audience (when given) its audience. Its claim names,
//     role and org type maps and refresh intervals stay as the file says.
//   - Otherwise the flags add that issuer: --jwks is then required, the
//     audience is --audience or DefaultAudience, and the claim names are
//     careplan's own ("org", "org_type", "roles") with no role map.
//   - --jwks or --audience without --issuer is an error.
//
// Other issuers, and allowed_orgs, are never changed by flags.
func (f *File) ApplyFlags(fl Flags) error {
	if fl.Issuer == "" {
		if fl.JWKS != "" || fl.Audience != "" {
			return errors.New("trustconfig: --jwks and --audience need --issuer")
		}
		return nil
	}
	var iss *Issuer
	for i := range f.Issuers {
		if f.Issuers[i].Issuer == fl.Issuer {
			iss = &f.Issuers[i]
		}
	}
	if iss == nil {
		if fl.JWKS == "" {
			return fmt.Errorf("trustconfig: --issuer %q is not in the configuration file, so --jwks is required", fl.Issuer)
		}
		f.Issuers = append(f.Issuers, Issuer{Issuer: fl.Issuer, Audience: DefaultAudience})
		iss = &f.Issuers[len(f.Issuers)-1]
	}
	if fl.Audience != "" {
		iss.Audience = fl.Audience
	}
	switch {
	case fl.JWKS == "":
	case strings.Contains(fl.JWKS, "://"):
		if err := auth.CheckJWKSURL(fl.JWKS); err != nil {
			return fmt.Errorf("trustconfig: --jwks: %w", err)
		}
		iss.JWKSURL, iss.JWKSFile = fl.JWKS, ""
	default:
		iss.JWKSURL, iss.JWKSFile = "", fl.JWKS
	}
	return nil
}
