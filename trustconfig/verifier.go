package trustconfig

import (
	"fmt"
	"os"
	"slices"

	"github.com/careplan/careplan/auth"
)

// VerifierConfig reads the JWKS files and returns the configuration for
// auth.NewVerifier, which fetches the JWKS URLs itself. Leeway, token size,
// clock and logger are left for the caller to set.
func (f *File) VerifierConfig() (auth.Config, error) {
	cfg := auth.Config{AllowedOrgs: slices.Clone(f.AllowedOrgs)}
	for _, iss := range f.Issuers {
		ic := auth.IssuerConfig{
			Issuer:             iss.Issuer,
			Audience:           iss.Audience,
			JWKSURL:            iss.JWKSURL,
			RefreshInterval:    iss.RefreshInterval,
			MinRefreshInterval: iss.MinRefreshInterval,
			Claims:             auth.ClaimNames(iss.Claims),
			RoleMap:            iss.RoleMap,
			OrgTypeMap:         iss.OrgTypeMap,
			OrgTypes:           iss.OrgTypes,
			Orgs:               iss.Orgs,
		}
		if iss.JWKSFile != "" {
			jwks, err := os.ReadFile(iss.JWKSFile)
			if err != nil {
				return auth.Config{}, fmt.Errorf("trustconfig: issuer %q: %w", iss.Issuer, err)
			}
			if len(jwks) == 0 {
				return auth.Config{}, fmt.Errorf("trustconfig: issuer %q: JWKS file %s is empty", iss.Issuer, iss.JWKSFile)
			}
			ic.JWKS = jwks
		}
		cfg.Issuers = append(cfg.Issuers, ic)
	}
	return cfg, nil
}
