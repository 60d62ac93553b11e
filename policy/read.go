package policy

import (
	"strings"
	"unicode/utf8"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// MinAccessReasonLength is the fewest characters, after trimming spaces, of
// the x-access-reason a break-glass read must state.
const MinAccessReasonLength = 10

// CheckRead decides whether pr may read p. A related organisation with
// careplan:read reads normally. Anyone else may read only by breaking the
// glass: the careplan:break-glass role, a stated accessReason, and no
// sharing objection. breakGlass reports that path, which the caller must
// audit with the reason and emit as ACCESSED_BREAK_GLASS.
//
// A related organisation without careplan:read but with break-glass takes
// the break-glass path, so that its read is audited like any other.
func CheckRead(pr *auth.Principal, p *careplanv1.CarePlan, accessReason string) (breakGlass bool, err error) {
	related := pr != nil && Related(p, pr.Org)
	if related && pr.HasRole(auth.RoleRead) {
		return false, nil
	}
	if !pr.HasRole(auth.RoleBreakGlass) {
		if related || !pr.HasRole(auth.RoleRead) {
			return false, deny(ReasonMissingRole, "reading a plan needs "+auth.RoleRead+" in a related organisation, or "+auth.RoleBreakGlass)
		}
		return false, deny(ReasonNotRelated, "the caller's organisation is not named in this plan")
	}
	// The reason is checked before the objection so that a caller learns
	// nothing about the person's choices until they have said why they ask.
	if utf8.RuneCountInString(strings.TrimSpace(accessReason)) < MinAccessReasonLength {
		return false, deny(ReasonBreakGlassReasonRequired, "break-glass access needs an x-access-reason of at least 10 characters")
	}
	if p.GetSharingObjection() {
		return false, deny(ReasonSharingObjection, "the person has objected to sharing beyond their care team")
	}
	return true, nil
}
