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

// ReadFacts is what a read decision needs to know about a plan. A store
// can answer it from its organisation index and the stored bytes, so a
// read need not decode the plan.
type ReadFacts struct {
	// Related reports that the caller's organisation is related to the
	// plan (see Related).
	Related bool
	// SharingObjection is the plan's sharing_objection.
	SharingObjection bool
}

// FactsOf returns the ReadFacts of a decoded plan for a caller from org.
func FactsOf(p *careplanv1.CarePlan, org string) ReadFacts {
	return ReadFacts{Related: Related(p, org), SharingObjection: p.GetSharingObjection()}
}

// CheckRead decides whether pr may read a plan with facts f. A related organisation with
// careplan:read reads normally. Anyone else may read only by breaking the
// glass: the careplan:break-glass role, a stated accessReason, and no
// sharing objection. breakGlass reports that path, which the caller must
// audit with the reason and emit as ACCESSED_BREAK_GLASS.
//
// A related organisation without careplan:read but with break-glass takes
// the break-glass path, so that its read is audited like any other.
func CheckRead(pr *auth.Principal, f ReadFacts, accessReason string) (breakGlass bool, err error) {
	related := pr != nil && f.Related
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
	if f.SharingObjection {
		return false, deny(ReasonSharingObjection, "the person has objected to sharing beyond their care team")
	}
	return true, nil
}

// InFeed decides whether a change-feed event about a plan may reach a
// watcher from org. The organisation must be related to the plan as the
// event carries it, and to the plan now: now returns the current version's
// read facts for org, and is called only when the first holds. So an
// organisation removed from a plan gets nothing more of it on the feed, old
// revisions included, and one added later gets none of the versions from
// before it took part. Break-glass plays no part: watching needs
// careplan:read.
func InFeed(eventPlan *careplanv1.CarePlan, org string, now func() (ReadFacts, error)) (bool, error) {
	if !Related(eventPlan, org) {
		return false, nil
	}
	f, err := now()
	if err != nil {
		return false, err
	}
	return f.Related, nil
}
