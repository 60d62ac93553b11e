package policy

import (
	"iter"
	"slices"
	"strings"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// code returns o's ODS code upper case, so that comparisons hold even for a
// plan that has not been through validate's normalisation.
func code(o *careplanv1.Organisation) string {
	return strings.ToUpper(o.GetOdsCode())
}

// relatedCodes yields the ODS code of every organisation that makes an
// organisation related to p, in plan order, with repeats. Goal owners are
// not included: DESIGN.md names only the coordinator, the team and activity
// providers, and owning a goal does not by itself grant access to the plan.
func relatedCodes(p *careplanv1.CarePlan) iter.Seq[string] {
	return func(yield func(string) bool) {
		if !yield(code(p.GetCoordinator().GetOrganisation())) {
			return
		}
		for _, m := range p.GetTeam() {
			if !yield(code(m.GetProfessional().GetOrganisation())) {
				return
			}
		}
		for _, a := range p.GetActivities() {
			if !yield(code(a.GetProvider())) {
				return
			}
		}
	}
}

// RelatedOrgs returns the sorted, unique ODS codes of the organisations
// related to p: its coordinator's, every team member's and every activity
// provider's. The store indexes plans by these codes.
func RelatedOrgs(p *careplanv1.CarePlan) []string {
	codes := slices.DeleteFunc(slices.Sorted(relatedCodes(p)), func(c string) bool { return c == "" })
	return slices.Compact(codes)
}

// Related reports whether org is related to p.
func Related(p *careplanv1.CarePlan, org string) bool {
	org = strings.ToUpper(org)
	if org == "" {
		return false
	}
	for c := range relatedCodes(p) {
		if c == org {
			return true
		}
	}
	return false
}
