package policy

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// root prefixes every field path, matching the request field that carries
// the plan in CreateCarePlan and UpdateCarePlan.
const root = "care_plan"

// coordinatorOnly are the plan-level fields that only the coordinator's
// organisation may change, in proto field order.
//
// DESIGN.md names person, status, coordinator, team, sharing_objection and
// next_review_date. what_matters, preferred_place_of_care and key_contacts
// are added here: like person and sharing_objection they describe the
// person rather than one organisation's work, so the one coordinator who
// speaks with the person keeps them, and two organisations cannot overwrite
// each other's account of what the person wants.
var coordinatorOnly = []protoreflect.Name{
	"person",
	"status",
	"coordinator",
	"team",
	"what_matters",
	"preferred_place_of_care",
	"key_contacts",
	"sharing_objection",
	"next_review_date",
}

// CheckWrite decides whether pr may store next, replacing old (nil for a
// create). Only changes are judged: a field equal in old and next never
// causes a denial, so a client may re-send another organisation's parts
// unchanged. Every refused field path is collected into one *DeniedError.
//
// Rules, in the words of DESIGN.md "Auth (C)":
//   - the caller needs careplan:write;
//   - on update, the caller's organisation must be related to old; on
//     create, it must be next's coordinator organisation or in its team;
//   - only the coordinator's organisation (of old, or of next on create)
//     may change the coordinatorOnly fields;
//   - a goal or activity, matched by id, may be added, changed or removed
//     only by its owner or provider organisation (before and after the
//     change), or by the coordinator's organisation;
//   - FUNDING_COUNCIL may be newly set only by a council organisation and
//     FUNDING_NHS only by an NHS one, the coordinator's included.
//
// A plan without a coordinator (only a draft may lack one) gives the
// coordinator's rights to the organisations in its team, so that the team
// that started a draft can complete it.
//
// When ownership and funding are both refused the reason is
// FIELD_NOT_PERMITTED; Fields holds the paths of both.
func CheckWrite(pr *auth.Principal, old, next *careplanv1.CarePlan) error {
	if !pr.HasRole(auth.RoleWrite) {
		return deny(ReasonMissingRole, "changing a plan needs "+auth.RoleWrite)
	}
	w := &writeCheck{caller: strings.ToUpper(pr.Org), callerType: pr.OrgType}
	if old == nil {
		if !named(next, w.caller) {
			d := deny(ReasonNotNamedInPlan, "a new plan must name the caller's organisation as coordinator or in the team")
			d.Fields = []string{root + ".coordinator", root + ".team"}
			return d
		}
		w.coordinator = hasCoordinatorRights(next, w.caller)
	} else {
		if !Related(old, w.caller) {
			return deny(ReasonNotRelated, "the caller's organisation is not named in this plan")
		}
		w.coordinator = hasCoordinatorRights(old, w.caller)
		if !w.coordinator {
			w.planFields(old, next)
		}
	}
	checkItems(w, root+".goals", old.GetGoals(), next.GetGoals(), (*careplanv1.Goal).GetOwner)
	checkItems(w, root+".activities", old.GetActivities(), next.GetActivities(), (*careplanv1.Activity).GetProvider)
	w.funding(old.GetActivities(), next.GetActivities())
	return w.result()
}

// named reports whether org is next's coordinator organisation or in its
// team: the organisations that may create a plan.
func named(p *careplanv1.CarePlan, org string) bool {
	if org == "" {
		return false
	}
	if code(p.GetCoordinator().GetOrganisation()) == org {
		return true
	}
	for _, m := range p.GetTeam() {
		if code(m.GetProfessional().GetOrganisation()) == org {
			return true
		}
	}
	return false
}

// hasCoordinatorRights reports whether org acts as p's coordinator
// organisation: it is, or p has no coordinator and org is in the team.
func hasCoordinatorRights(p *careplanv1.CarePlan, org string) bool {
	if c := code(p.GetCoordinator().GetOrganisation()); c != "" {
		return c == org
	}
	return named(p, org)
}

// writeCheck collects the paths a write may not change.
type writeCheck struct {
	caller      string
	callerType  careplanv1.Organisation_Type
	coordinator bool
	owned       []string // refused: not the caller's to change
	funded      []string // refused: funding the caller may not set
}

// planFields refuses every changed coordinatorOnly field. Presence counts
// as in proto.Equal: an absent coordinator differs from an empty one.
func (w *writeCheck) planFields(old, next *careplanv1.CarePlan) {
	o, n := old.ProtoReflect(), next.ProtoReflect()
	fields := o.Descriptor().Fields()
	for _, name := range coordinatorOnly {
		fd := fields.ByName(name)
		if o.Has(fd) != n.Has(fd) || !o.Get(fd).Equal(n.Get(fd)) {
			w.owned = append(w.owned, root+"."+string(name))
		}
	}
}

// item is a goal or an activity: an element matched by id across versions.
type item interface {
	proto.Message
	GetId() string
}

// checkItems refuses each goal or activity that the caller added, changed or
// removed without owning it (owner returns its owner or provider). Elements
// still in next are named by their index in next; removed ones, which have
// no index, by id. An element without an id is always new: the server has
// not assigned it one yet.
func checkItems[T item](w *writeCheck, field string, old, next []T, owner func(T) *careplanv1.Organisation) {
	prev := byID(old)
	kept := make(map[string]bool, len(next))
	owns := func(x T) bool { return code(owner(x)) == w.caller }
	for i, n := range next {
		o, found := prev[n.GetId()]
		kept[n.GetId()] = found
		allowed := w.coordinator ||
			found && (proto.Equal(o, n) || owns(o) && owns(n)) ||
			!found && owns(n)
		if !allowed {
			w.owned = append(w.owned, field+"["+strconv.Itoa(i)+"]")
		}
	}
	for _, o := range old {
		if !kept[o.GetId()] && !w.coordinator && !owns(o) {
			w.owned = append(w.owned, field+"[id="+o.GetId()+"]")
		}
	}
}

// byID indexes the elements that have an id.
func byID[T item](items []T) map[string]T {
	m := make(map[string]T, len(items))
	for _, x := range items {
		if x.GetId() != "" {
			m[x.GetId()] = x
		}
	}
	return m
}

// fundingOrgType says which organisation type may set a funding; funding
// not listed (JOINT, SELF) may be set by either.
var fundingOrgType = map[careplanv1.Activity_Funding]careplanv1.Organisation_Type{
	careplanv1.Activity_FUNDING_NHS:     careplanv1.Organisation_TYPE_NHS,
	careplanv1.Activity_FUNDING_COUNCIL: careplanv1.Organisation_TYPE_COUNCIL,
}

// funding refuses each activity whose funding the caller added or changed
// to one its organisation type may not set. The budget holder decides who
// pays, whoever coordinates.
func (w *writeCheck) funding(old, next []*careplanv1.Activity) {
	prev := byID(old)
	for i, n := range next {
		f := n.GetFunding()
		if o, found := prev[n.GetId()]; found && o.GetFunding() == f {
			continue
		}
		if want, restricted := fundingOrgType[f]; restricted && w.callerType != want {
			w.funded = append(w.funded, root+".activities["+strconv.Itoa(i)+"].funding")
		}
	}
}

func (w *writeCheck) result() error {
	const (
		fieldMsg   = "only the coordinator's organisation, or a goal's owner or an activity's provider, may change these"
		fundingMsg = "FUNDING_COUNCIL may be set only by a council organisation and FUNDING_NHS only by an NHS one"
	)
	switch {
	case len(w.owned) > 0 && len(w.funded) > 0:
		return &DeniedError{Reason: ReasonFieldNotPermitted, Message: fieldMsg + "; " + fundingMsg, Fields: append(w.owned, w.funded...)}
	case len(w.owned) > 0:
		return &DeniedError{Reason: ReasonFieldNotPermitted, Message: fieldMsg, Fields: w.owned}
	case len(w.funded) > 0:
		return &DeniedError{Reason: ReasonFundingNotPermitted, Message: fundingMsg, Fields: w.funded}
	}
	return nil
}
