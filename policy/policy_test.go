package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

const (
	nhsType     = careplanv1.Organisation_TYPE_NHS
	councilType = careplanv1.Organisation_TYPE_COUNCIL
)

// Three organisations: the NHS trust RXA coordinates, the council C123 is in
// the team, and ZZZ9 has nothing to do with the plan.
func principal(org string, typ careplanv1.Organisation_Type, roles ...string) *auth.Principal {
	return &auth.Principal{Subject: "user-" + org, Org: org, OrgType: typ, Roles: roles}
}

var (
	nhs       = principal("RXA", nhsType, auth.RoleRead, auth.RoleWrite)
	council   = principal("C123", councilType, auth.RoleRead, auth.RoleWrite)
	unrelated = principal("ZZZ9", nhsType, auth.RoleRead, auth.RoleWrite)
)

func org(code string, typ careplanv1.Organisation_Type) *careplanv1.Organisation {
	return &careplanv1.Organisation{OdsCode: code, Type: typ, Name: "Org " + code}
}

func goal(id string, owner *careplanv1.Organisation) *careplanv1.Goal {
	return &careplanv1.Goal{Id: id, Description: "Goal " + id, Status: careplanv1.Goal_STATUS_ACTIVE, Owner: owner}
}

func activity(id string, provider *careplanv1.Organisation, f careplanv1.Activity_Funding) *careplanv1.Activity {
	return &careplanv1.Activity{
		Id: id, Description: "Activity " + id, Status: careplanv1.Activity_STATUS_SCHEDULED,
		Kind: careplanv1.Activity_KIND_HOME_CARE, Provider: provider, Funding: f,
	}
}

// plan: coordinator RXA; team C123; goals g1 (RXA), g2 (C123); activities
// a1 (RXA, NHS-funded), a2 (C123, council-funded), a3 (C123, joint).
func plan() *careplanv1.CarePlan {
	rxa, c123 := org("RXA", nhsType), org("C123", councilType)
	return &careplanv1.CarePlan{
		NhsNumber:   "9434765919",
		Person:      &careplanv1.Person{GivenName: "Ada", FamilyName: "Example", BirthDate: "1940-01-01"},
		Status:      careplanv1.CarePlan_STATUS_ACTIVE,
		Coordinator: &careplanv1.Professional{Id: "p1", Name: "Pat Coordinator", Organisation: rxa},
		Team: []*careplanv1.TeamMember{{
			Professional: &careplanv1.Professional{Id: "p2", Name: "Sam Social", Organisation: c123},
		}},
		Goals: []*careplanv1.Goal{goal("g1", rxa), goal("g2", c123)},
		Activities: []*careplanv1.Activity{
			activity("a1", rxa, careplanv1.Activity_FUNDING_NHS),
			activity("a2", c123, careplanv1.Activity_FUNDING_COUNCIL),
			activity("a3", c123, careplanv1.Activity_FUNDING_JOINT),
		},
		WhatMatters: "Staying at home",
		KeyContacts: []*careplanv1.KeyContact{{Name: "Bo Example"}},
	}
}

// checkDenied asserts err is nil when reason is empty, or a *DeniedError
// with that reason and exactly those fields, matched by errors.Is, and free
// of patient data.
func checkDenied(t *testing.T, err error, reason string, fields []string) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("denied: %v", err)
		}
		return
	}
	var d *policy.DeniedError
	if !errors.As(err, &d) {
		t.Fatalf("err = %v, want a *DeniedError with reason %s", err, reason)
	}
	if !errors.Is(err, policy.ErrDenied) {
		t.Errorf("errors.Is(err, ErrDenied) = false")
	}
	if d.Reason != reason {
		t.Errorf("reason = %s, want %s (%v)", d.Reason, reason, err)
	}
	if !slices.Equal(d.Fields, fields) {
		t.Errorf("fields = %q, want %q", d.Fields, fields)
	}
	for _, secret := range []string{"9434765919", "Ada", "Example", "Pat", "Sam"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains patient or staff data %q", err, secret)
		}
	}
}

func TestRelatedOrgs(t *testing.T) {
	p := plan()
	p.Goals = append(p.Goals, goal("g3", org("GOAL1", nhsType)))
	p.Activities = append(p.Activities, activity("a4", org("ryy", nhsType), careplanv1.Activity_FUNDING_SELF))
	want := []string{"C123", "RXA", "RYY"}
	if got := policy.RelatedOrgs(p); !slices.Equal(got, want) {
		t.Errorf("RelatedOrgs = %q, want %q", got, want)
	}
	tests := []struct {
		org  string
		want bool
	}{
		{"RXA", true}, {"C123", true}, {"RYY", true}, {"rxa", true},
		{"GOAL1", false}, {"ZZZ9", false}, {"", false},
	}
	for _, tt := range tests {
		if got := policy.Related(p, tt.org); got != tt.want {
			t.Errorf("Related(%q) = %v, want %v", tt.org, got, tt.want)
		}
	}
	if got := policy.RelatedOrgs(&careplanv1.CarePlan{}); len(got) != 0 {
		t.Errorf("RelatedOrgs(empty plan) = %q, want none", got)
	}
}

func TestCheckRead(t *testing.T) {
	const reason = "A&E admission, patient unconscious"
	objecting := plan()
	objecting.SharingObjection = true

	tests := []struct {
		name       string
		pr         *auth.Principal
		plan       *careplanv1.CarePlan
		reason     string
		breakGlass bool
		denied     string
	}{
		{name: "coordinator org reads", pr: nhs, plan: plan()},
		{name: "team org reads", pr: council, plan: plan()},
		{name: "activity provider reads", pr: principal("C123", councilType, auth.RoleRead), plan: func() *careplanv1.CarePlan {
			p := plan()
			p.Team = nil // C123 is now related only as a provider
			return p
		}()},
		{name: "related org reads despite an objection", pr: nhs, plan: objecting},
		{name: "related org with break-glass reads normally", pr: principal("RXA", nhsType, auth.RoleRead, auth.RoleBreakGlass), plan: plan(), reason: reason},
		{name: "related org without read role", pr: principal("RXA", nhsType, auth.RoleWrite), plan: plan(), denied: policy.ReasonMissingRole},
		{name: "unrelated org", pr: unrelated, plan: plan(), denied: policy.ReasonNotRelated},
		{name: "unrelated org with no roles", pr: principal("ZZZ9", nhsType), plan: plan(), denied: policy.ReasonMissingRole},
		{name: "no principal", pr: nil, plan: plan(), denied: policy.ReasonMissingRole},
		{name: "unrelated org with a reason but no break-glass role", pr: unrelated, plan: plan(), reason: reason, denied: policy.ReasonNotRelated},
		{name: "break glass", pr: principal("ZZZ9", nhsType, auth.RoleBreakGlass), plan: plan(), reason: reason, breakGlass: true},
		{name: "break glass with exactly 10 characters", pr: principal("ZZZ9", nhsType, auth.RoleBreakGlass), plan: plan(), reason: "  0123456789  ", breakGlass: true},
		{name: "break glass with a short reason", pr: principal("ZZZ9", nhsType, auth.RoleBreakGlass), plan: plan(), reason: "   urgent     ", denied: policy.ReasonBreakGlassReasonRequired},
		{name: "break glass without a reason", pr: principal("ZZZ9", nhsType, auth.RoleBreakGlass), plan: plan(), denied: policy.ReasonBreakGlassReasonRequired},
		{name: "break glass under a sharing objection", pr: principal("ZZZ9", nhsType, auth.RoleBreakGlass), plan: objecting, reason: reason, denied: policy.ReasonSharingObjection},
		{name: "related org without read breaks glass", pr: principal("RXA", nhsType, auth.RoleBreakGlass), plan: plan(), reason: reason, breakGlass: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var org string
			if tt.pr != nil {
				org = tt.pr.Org
			}
			bg, err := policy.CheckRead(tt.pr, policy.FactsOf(tt.plan, org), tt.reason)
			checkDenied(t, err, tt.denied, nil)
			if bg != tt.breakGlass {
				t.Errorf("breakGlass = %v, want %v", bg, tt.breakGlass)
			}
		})
	}
}

func TestCheckWriteUpdate(t *testing.T) {
	tests := []struct {
		name   string
		pr     *auth.Principal
		old    func() *careplanv1.CarePlan // nil: plan()
		edit   func(p *careplanv1.CarePlan)
		denied string
		fields []string
	}{
		{name: "unchanged plan", pr: council, edit: func(*careplanv1.CarePlan) {}},
		{
			name: "coordinator org changes plan-level fields",
			pr:   nhs,
			edit: func(p *careplanv1.CarePlan) {
				p.Status = careplanv1.CarePlan_STATUS_ON_HOLD
				p.Person.GivenName = "Ada Mary"
				p.Team = nil
				p.Coordinator.Name = "Alex New"
				p.SharingObjection = true
				p.NextReviewDate = "2026-01-01"
			},
		},
		{name: "without write role", pr: principal("RXA", nhsType, auth.RoleRead), edit: func(*careplanv1.CarePlan) {}, denied: policy.ReasonMissingRole},
		{name: "no principal", pr: nil, edit: func(*careplanv1.CarePlan) {}, denied: policy.ReasonMissingRole},
		{name: "unrelated org", pr: unrelated, edit: func(*careplanv1.CarePlan) {}, denied: policy.ReasonNotRelated},
		{
			name:   "goal owner alone is not related",
			pr:     principal("GOAL1", nhsType, auth.RoleWrite),
			old:    func() *careplanv1.CarePlan { p := plan(); p.Goals[0].Owner = org("GOAL1", nhsType); return p },
			edit:   func(p *careplanv1.CarePlan) { p.Goals[0].Description = "changed" },
			denied: policy.ReasonNotRelated,
		},
		{
			name:   "relatedness is judged on the stored plan",
			pr:     unrelated,
			edit:   func(p *careplanv1.CarePlan) { p.Coordinator.Organisation = org("ZZZ9", nhsType) },
			denied: policy.ReasonNotRelated,
		},
		{name: "non-coordinator changes status", pr: council, edit: func(p *careplanv1.CarePlan) { p.Status = careplanv1.CarePlan_STATUS_COMPLETED }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.status"}},
		{
			name: "non-coordinator changes coordinator, team and person",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) {
				p.Coordinator.Organisation = org("C123", councilType)
				p.Team = append(p.Team, &careplanv1.TeamMember{Responsibility: "new"})
				p.Person.BirthDate = "1940-01-02"
			},
			denied: policy.ReasonFieldNotPermitted,
			fields: []string{"care_plan.person", "care_plan.coordinator", "care_plan.team"},
		},
		{
			name: "non-coordinator changes person-level fields",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) {
				p.WhatMatters = "changed"
				p.PreferredPlaceOfCare = careplanv1.CarePlan_PLACE_OF_CARE_HOSPICE
				p.KeyContacts = nil
				p.SharingObjection = true
				p.NextReviewDate = "2026-01-01"
			},
			denied: policy.ReasonFieldNotPermitted,
			fields: []string{
				"care_plan.what_matters", "care_plan.preferred_place_of_care", "care_plan.key_contacts",
				"care_plan.sharing_objection", "care_plan.next_review_date",
			},
		},
		{name: "non-coordinator clears the coordinator", pr: council, edit: func(p *careplanv1.CarePlan) { p.Coordinator = nil }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.coordinator"}},
		{name: "owner edits own goal", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals[1].Status = careplanv1.Goal_STATUS_ACHIEVED }},
		{name: "owner removes own goal", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals = p.Goals[:1] }},
		{name: "org adds own goal", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals = append(p.Goals, goal("", org("C123", councilType))) }},
		{name: "org edits another org's goal", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals[0].Description = "changed" }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.goals[0]"}},
		{name: "org removes another org's goal", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals = p.Goals[1:] }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.goals[id=g1]"}},
		{name: "org adds a goal for another org", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals = append(p.Goals, goal("g9", org("RXA", nhsType))) }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.goals[2]"}},
		{name: "org takes over another org's goal", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals[0].Owner = org("C123", councilType) }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.goals[0]"}},
		{name: "org hands its goal to another org", pr: council, edit: func(p *careplanv1.CarePlan) { p.Goals[1].Owner = org("RXA", nhsType) }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.goals[1]"}},
		{
			name: "reordering goals changes nothing",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) { p.Goals[0], p.Goals[1] = p.Goals[1], p.Goals[0] },
		},
		{
			name: "coordinator org edits and removes anyone's goals and activities",
			pr:   nhs,
			edit: func(p *careplanv1.CarePlan) {
				p.Goals[1].Description = "changed"
				p.Goals = append(p.Goals, goal("g9", org("C123", councilType)))
				p.Activities = p.Activities[:1]
			},
		},
		{name: "provider edits own activity", pr: council, edit: func(p *careplanv1.CarePlan) { p.Activities[1].Schedule = "3 visits a day" }},
		{name: "org edits another org's activity", pr: council, edit: func(p *careplanv1.CarePlan) { p.Activities[0].Schedule = "weekly" }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.activities[0]"}},
		{name: "org removes another org's activity", pr: council, edit: func(p *careplanv1.CarePlan) { p.Activities = p.Activities[1:] }, denied: policy.ReasonFieldNotPermitted, fields: []string{"care_plan.activities[id=a1]"}},
		{
			name: "NHS org removes the council's activities",
			pr:   principal("RXB", nhsType, auth.RoleWrite),
			old: func() *careplanv1.CarePlan {
				p := plan()
				p.Team[0].Professional.Organisation = org("RXB", nhsType)
				return p
			},
			edit:   func(p *careplanv1.CarePlan) { p.Activities = p.Activities[:1] },
			denied: policy.ReasonFieldNotPermitted,
			fields: []string{"care_plan.activities[id=a2]", "care_plan.activities[id=a3]"},
		},
		{
			name: "council adds NHS funding",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) {
				p.Activities = append(p.Activities, activity("a9", org("C123", councilType), careplanv1.Activity_FUNDING_NHS))
			},
			denied: policy.ReasonFundingNotPermitted,
			fields: []string{"care_plan.activities[3].funding"},
		},
		{
			name:   "council changes its own activity to NHS funding",
			pr:     council,
			edit:   func(p *careplanv1.CarePlan) { p.Activities[2].Funding = careplanv1.Activity_FUNDING_NHS },
			denied: policy.ReasonFundingNotPermitted,
			fields: []string{"care_plan.activities[2].funding"},
		},
		{name: "council sets council funding", pr: council, edit: func(p *careplanv1.CarePlan) { p.Activities[2].Funding = careplanv1.Activity_FUNDING_COUNCIL }},
		{name: "council sets joint funding", pr: council, edit: func(p *careplanv1.CarePlan) { p.Activities[1].Funding = careplanv1.Activity_FUNDING_JOINT }},
		{
			name:   "NHS coordinator sets council funding",
			pr:     nhs,
			edit:   func(p *careplanv1.CarePlan) { p.Activities[2].Funding = careplanv1.Activity_FUNDING_COUNCIL },
			denied: policy.ReasonFundingNotPermitted,
			fields: []string{"care_plan.activities[2].funding"},
		},
		{
			name: "NHS coordinator edits a council-funded activity, funding unchanged",
			pr:   nhs,
			edit: func(p *careplanv1.CarePlan) { p.Activities[1].Description = "changed" },
		},
		{
			name: "non-coordinator NHS org re-sends an unchanged council-funded activity",
			pr:   principal("RXB", nhsType, auth.RoleWrite),
			old: func() *careplanv1.CarePlan {
				p := plan()
				p.Team[0].Professional.Organisation = org("RXB", nhsType)
				p.Activities = append(p.Activities, activity("a4", org("RXB", nhsType), careplanv1.Activity_FUNDING_NHS))
				return p
			},
			edit: func(p *careplanv1.CarePlan) { p.Activities[3].Schedule = "daily" },
		},
		{
			name: "ownership and funding refused together",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) {
				p.Status = careplanv1.CarePlan_STATUS_ON_HOLD
				p.Goals[0].Description = "changed"
				p.Activities[1].Funding = careplanv1.Activity_FUNDING_NHS
			},
			denied: policy.ReasonFieldNotPermitted,
			fields: []string{"care_plan.status", "care_plan.goals[0]", "care_plan.activities[1].funding"},
		},
		{
			name: "draft without coordinator: team org acts as coordinator",
			pr:   council,
			old: func() *careplanv1.CarePlan {
				p := plan()
				p.Coordinator = nil
				p.Status = careplanv1.CarePlan_STATUS_DRAFT
				return p
			},
			edit: func(p *careplanv1.CarePlan) {
				p.Coordinator = &careplanv1.Professional{Id: "p2", Organisation: org("C123", councilType)}
			},
			denied: "",
		},
		{
			name: "draft without coordinator: activity provider does not",
			pr:   principal("RXA", nhsType, auth.RoleWrite),
			old: func() *careplanv1.CarePlan {
				p := plan()
				p.Coordinator = nil
				p.Status = careplanv1.CarePlan_STATUS_DRAFT
				return p
			},
			edit:   func(p *careplanv1.CarePlan) { p.Status = careplanv1.CarePlan_STATUS_ACTIVE },
			denied: policy.ReasonFieldNotPermitted,
			fields: []string{"care_plan.status"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := plan()
			if tt.old != nil {
				old = tt.old()
			}
			next := proto.Clone(old).(*careplanv1.CarePlan)
			tt.edit(next)
			before := proto.Clone(old)
			checkDenied(t, policy.CheckWrite(tt.pr, old, next), tt.denied, tt.fields)
			if !proto.Equal(before, old) {
				t.Errorf("CheckWrite changed the stored plan")
			}
		})
	}
}

func TestCheckWriteCreate(t *testing.T) {
	tests := []struct {
		name   string
		pr     *auth.Principal
		edit   func(p *careplanv1.CarePlan)
		denied string
		fields []string
	}{
		{name: "coordinator org creates with every org's goals", pr: nhs, edit: func(p *careplanv1.CarePlan) { p.Activities = p.Activities[:1] }},
		{
			name: "team org creates with its own goals and activities",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) {
				p.Goals = p.Goals[1:]
				p.Activities = p.Activities[1:]
			},
		},
		{
			name:   "team org creates with another org's goal and activity",
			pr:     council,
			edit:   func(p *careplanv1.CarePlan) {},
			denied: policy.ReasonFieldNotPermitted,
			fields: []string{"care_plan.goals[0]", "care_plan.activities[0]", "care_plan.activities[0].funding"},
		},
		{
			name:   "create not naming the caller",
			pr:     unrelated,
			edit:   func(p *careplanv1.CarePlan) { p.Goals, p.Activities = nil, nil },
			denied: policy.ReasonNotNamedInPlan,
			fields: []string{"care_plan.coordinator", "care_plan.team"},
		},
		{
			name: "activity provider alone may not create",
			pr:   principal("RYY", nhsType, auth.RoleWrite),
			edit: func(p *careplanv1.CarePlan) {
				p.Activities = append(p.Activities, activity("a9", org("RYY", nhsType), careplanv1.Activity_FUNDING_NHS))
			},
			denied: policy.ReasonNotNamedInPlan,
			fields: []string{"care_plan.coordinator", "care_plan.team"},
		},
		{name: "without write role", pr: principal("RXA", nhsType, auth.RoleRead), edit: func(*careplanv1.CarePlan) {}, denied: policy.ReasonMissingRole},
		{
			name:   "NHS coordinator creates a council-funded activity",
			pr:     nhs,
			edit:   func(*careplanv1.CarePlan) {},
			denied: policy.ReasonFundingNotPermitted,
			fields: []string{"care_plan.activities[1].funding"},
		},
		{
			name: "council creates an NHS-funded activity",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) {
				p.Goals = nil
				p.Activities = []*careplanv1.Activity{activity("", org("C123", councilType), careplanv1.Activity_FUNDING_NHS)}
			},
			denied: policy.ReasonFundingNotPermitted,
			fields: []string{"care_plan.activities[0].funding"},
		},
		{
			name: "draft without coordinator created by a team org",
			pr:   council,
			edit: func(p *careplanv1.CarePlan) {
				p.Status, p.Coordinator = careplanv1.CarePlan_STATUS_DRAFT, nil
				p.Activities = p.Activities[1:]
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := plan()
			tt.edit(next)
			checkDenied(t, policy.CheckWrite(tt.pr, nil, next), tt.denied, tt.fields)
		})
	}
}
