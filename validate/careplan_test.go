package validate_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/validate"
)

func org(code string, typ careplanv1.Organisation_Type) *careplanv1.Organisation {
	return &careplanv1.Organisation{OdsCode: code, Type: typ, Name: "Org " + code}
}

func professional(id, code string, typ careplanv1.Organisation_Type) *careplanv1.Professional {
	return &careplanv1.Professional{
		Id: id, Name: "Pat Example", Role: "Care coordinator",
		Organisation: org(code, typ), Phone: "0113 496 0000", Email: "pat@example.org",
	}
}

func goal(id string) *careplanv1.Goal {
	return &careplanv1.Goal{
		Id: id, Description: "Walk to the shop", Status: careplanv1.Goal_STATUS_ACTIVE,
		TargetDate: "2026-03-01", Owner: org("RXA", careplanv1.Organisation_TYPE_NHS),
	}
}

func activity(id string) *careplanv1.Activity {
	return &careplanv1.Activity{
		Id: id, Description: "Morning and evening visits", Status: careplanv1.Activity_STATUS_SCHEDULED,
		Schedule: "2 visits a day", StartDate: "2025-07-01", EndDate: "2025-09-30",
		Kind: careplanv1.Activity_KIND_HOME_CARE, Provider: org("C123", careplanv1.Organisation_TYPE_COUNCIL),
		Funding: careplanv1.Activity_FUNDING_COUNCIL,
	}
}

// validPlan sets every client-settable field, so that each case below can
// break exactly one thing.
func validPlan() *careplanv1.CarePlan {
	return &careplanv1.CarePlan{
		NhsNumber:   "9434765919",
		Person:      &careplanv1.Person{GivenName: "Ada", FamilyName: "Example", BirthDate: "1940-02-29"},
		Status:      careplanv1.CarePlan_STATUS_ACTIVE,
		Coordinator: professional("p1", "RXA", careplanv1.Organisation_TYPE_NHS),
		Team: []*careplanv1.TeamMember{{
			Professional:   professional("p2", "C123", careplanv1.Organisation_TYPE_COUNCIL),
			Responsibility: "Long-term care package",
			StartDate:      "2025-07-01",
			EndDate:        "2026-06-30",
		}},
		Goals:                []*careplanv1.Goal{goal("g1"), goal("")},
		Activities:           []*careplanv1.Activity{activity("a1"), activity("")},
		WhatMatters:          "Staying at home with my cat",
		PreferredPlaceOfCare: careplanv1.CarePlan_PLACE_OF_CARE_HOME,
		KeyContacts:          []*careplanv1.KeyContact{{Name: "Bo Example", Relationship: "Son", Phone: "07700 900000"}},
		NextReviewDate:       "2025-10-01",
	}
}

func repeat[T any](n int, f func(i int) T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = f(i)
	}
	return s
}

func TestCarePlanValid(t *testing.T) {
	p := validPlan()
	if v := validate.DefaultLimits().CarePlan(p, "care_plan"); len(v) != 0 {
		t.Fatalf("valid plan: %v", v)
	}
	if !proto.Equal(p, validPlan()) {
		t.Errorf("a plan that needs no normalisation was changed")
	}
}

func TestCarePlanViolations(t *testing.T) {
	l := validate.DefaultLimits()
	short := strings.Repeat("é", l.MaxShortString) // runes, not bytes, are counted
	text := strings.Repeat("é", l.MaxFreeText)
	id64 := strings.Repeat("x", validate.MaxIDLength)
	future := time.Now().AddDate(0, 0, 2).Format("2006-01-02")

	tests := []struct {
		name   string
		mutate func(p *careplanv1.CarePlan)
		want   []string
	}{
		{name: "nil plan", mutate: nil, want: []string{"care_plan"}},
		{
			name: "three separate errors are all reported",
			mutate: func(p *careplanv1.CarePlan) {
				p.NhsNumber = "9434765918"
				p.Goals[1].Owner.OdsCode = "TOO-LONG-CODE"
				p.Team[0].Professional.Organisation.Type = careplanv1.Organisation_TYPE_UNSPECIFIED
			},
			want: []string{
				"care_plan.goals[1].owner.ods_code",
				"care_plan.nhs_number",
				"care_plan.team[0].professional.organisation.type",
			},
		},
		{name: "nhs number missing", mutate: func(p *careplanv1.CarePlan) { p.NhsNumber = "" }, want: []string{"care_plan.nhs_number"}},
		{name: "person missing", mutate: func(p *careplanv1.CarePlan) { p.Person = nil }, want: []string{"care_plan.person"}},
		{
			name:   "person fields missing",
			mutate: func(p *careplanv1.CarePlan) { p.Person = &careplanv1.Person{GivenName: "  "} },
			want:   []string{"care_plan.person.birth_date", "care_plan.person.family_name", "care_plan.person.given_name"},
		},
		{name: "birth date not a date", mutate: func(p *careplanv1.CarePlan) { p.Person.BirthDate = "1941-02-29" }, want: []string{"care_plan.person.birth_date"}},
		{name: "birth date in the future", mutate: func(p *careplanv1.CarePlan) { p.Person.BirthDate = future }, want: []string{"care_plan.person.birth_date"}},
		{name: "birth date today", mutate: func(p *careplanv1.CarePlan) { p.Person.BirthDate = time.Now().Format("2006-01-02") }},
		{name: "status unspecified", mutate: func(p *careplanv1.CarePlan) { p.Status = 0 }, want: []string{"care_plan.status"}},
		{name: "status unknown", mutate: func(p *careplanv1.CarePlan) { p.Status = 99 }, want: []string{"care_plan.status"}},
		{name: "coordinator missing", mutate: func(p *careplanv1.CarePlan) { p.Coordinator = nil }, want: []string{"care_plan.coordinator"}},
		{
			name: "draft without coordinator",
			mutate: func(p *careplanv1.CarePlan) {
				p.Status = careplanv1.CarePlan_STATUS_DRAFT
				p.Coordinator = nil
			},
		},
		{
			name: "draft with an invalid coordinator",
			mutate: func(p *careplanv1.CarePlan) {
				p.Status = careplanv1.CarePlan_STATUS_DRAFT
				p.Coordinator.Id = ""
			},
			want: []string{"care_plan.coordinator.id"},
		},
		{
			name:   "coordinator fields missing",
			mutate: func(p *careplanv1.CarePlan) { p.Coordinator = &careplanv1.Professional{} },
			want:   []string{"care_plan.coordinator.id", "care_plan.coordinator.name", "care_plan.coordinator.organisation"},
		},
		{
			name: "coordinator organisation invalid",
			mutate: func(p *careplanv1.CarePlan) {
				p.Coordinator.Organisation = &careplanv1.Organisation{OdsCode: "R X A", Type: 7}
			},
			want: []string{"care_plan.coordinator.organisation.ods_code", "care_plan.coordinator.organisation.type"},
		},
		{name: "team member without professional", mutate: func(p *careplanv1.CarePlan) { p.Team[0].Professional = nil }, want: []string{"care_plan.team[0].professional"}},
		{name: "nil team member", mutate: func(p *careplanv1.CarePlan) { p.Team[0] = nil }, want: []string{"care_plan.team[0].professional"}},
		{name: "team end before start", mutate: func(p *careplanv1.CarePlan) { p.Team[0].EndDate = "2025-06-30" }, want: []string{"care_plan.team[0].end_date"}},
		{name: "team end equals start", mutate: func(p *careplanv1.CarePlan) { p.Team[0].EndDate = p.Team[0].StartDate }},
		{name: "team open-ended", mutate: func(p *careplanv1.CarePlan) { p.Team[0].EndDate = "" }},
		{name: "team start not a date", mutate: func(p *careplanv1.CarePlan) { p.Team[0].StartDate = "2025-7-1" }, want: []string{"care_plan.team[0].start_date"}},
		{name: "goal id duplicated", mutate: func(p *careplanv1.CarePlan) { p.Goals[1].Id = "g1" }, want: []string{"care_plan.goals[1].id"}},
		{
			name: "goal and activity may share an id",
			mutate: func(p *careplanv1.CarePlan) {
				p.Activities[0].Id = "g1"
			},
		},
		{
			name: "goal fields missing",
			mutate: func(p *careplanv1.CarePlan) {
				p.Goals[0] = &careplanv1.Goal{Id: "g1", TargetDate: "2026-02-30"}
			},
			want: []string{
				"care_plan.goals[0].description", "care_plan.goals[0].owner",
				"care_plan.goals[0].status", "care_plan.goals[0].target_date",
			},
		},
		{name: "goal status unknown", mutate: func(p *careplanv1.CarePlan) { p.Goals[0].Status = 99 }, want: []string{"care_plan.goals[0].status"}},
		{name: "activity id duplicated", mutate: func(p *careplanv1.CarePlan) { p.Activities[1].Id = "a1" }, want: []string{"care_plan.activities[1].id"}},
		{
			name: "activity fields missing",
			mutate: func(p *careplanv1.CarePlan) {
				p.Activities[1] = &careplanv1.Activity{StartDate: "2025-07-02", EndDate: "2025-07-01"}
			},
			want: []string{
				"care_plan.activities[1].description", "care_plan.activities[1].end_date",
				"care_plan.activities[1].funding", "care_plan.activities[1].kind",
				"care_plan.activities[1].provider", "care_plan.activities[1].status",
			},
		},
		{
			name: "activity enums unknown",
			mutate: func(p *careplanv1.CarePlan) {
				p.Activities[0].Kind, p.Activities[0].Funding, p.Activities[0].Status = 10, 5, 7
			},
			want: []string{"care_plan.activities[0].funding", "care_plan.activities[0].kind", "care_plan.activities[0].status"},
		},
		{name: "key contact without name", mutate: func(p *careplanv1.CarePlan) { p.KeyContacts[0].Name = "" }, want: []string{"care_plan.key_contacts[0].name"}},
		{name: "place of care unspecified", mutate: func(p *careplanv1.CarePlan) { p.PreferredPlaceOfCare = 0 }},
		{name: "place of care unknown", mutate: func(p *careplanv1.CarePlan) { p.PreferredPlaceOfCare = 6 }, want: []string{"care_plan.preferred_place_of_care"}},
		{name: "next review date invalid", mutate: func(p *careplanv1.CarePlan) { p.NextReviewDate = "tomorrow" }, want: []string{"care_plan.next_review_date"}},

		// Every bound: exactly at the limit passes, one over is a violation.
		{name: "team at limit", mutate: func(p *careplanv1.CarePlan) {
			p.Team = repeat(l.MaxTeam, func(int) *careplanv1.TeamMember { return p.Team[0] })
		}},
		{
			name: "team over limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.Team = repeat(l.MaxTeam+1, func(int) *careplanv1.TeamMember { return p.Team[0] })
			},
			want: []string{"care_plan.team"},
		},
		{name: "goals at limit", mutate: func(p *careplanv1.CarePlan) {
			p.Goals = repeat(l.MaxGoals, func(i int) *careplanv1.Goal { return goal(fmt.Sprint(i)) })
		}},
		{
			name: "goals over limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.Goals = repeat(l.MaxGoals+1, func(i int) *careplanv1.Goal { return goal(fmt.Sprint(i)) })
			},
			want: []string{"care_plan.goals"},
		},
		{
			name: "activities at limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.Activities = repeat(l.MaxActivities, func(i int) *careplanv1.Activity { return activity(fmt.Sprint(i)) })
			},
		},
		{
			name: "activities over limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.Activities = repeat(l.MaxActivities+1, func(i int) *careplanv1.Activity { return activity(fmt.Sprint(i)) })
			},
			want: []string{"care_plan.activities"},
		},
		{
			name: "key contacts at limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.KeyContacts = repeat(l.MaxKeyContacts, func(int) *careplanv1.KeyContact { return p.KeyContacts[0] })
			},
		},
		{
			name: "key contacts over limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.KeyContacts = repeat(l.MaxKeyContacts+1, func(int) *careplanv1.KeyContact { return p.KeyContacts[0] })
			},
			want: []string{"care_plan.key_contacts"},
		},
		{
			name: "short strings at limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.Person.GivenName, p.Coordinator.Email, p.Goals[0].Owner.Name, p.KeyContacts[0].Phone = short, short, short, short
			},
		},
		{
			name: "short strings over limit",
			mutate: func(p *careplanv1.CarePlan) {
				over := short + "é"
				p.Person.GivenName, p.Coordinator.Email, p.Goals[0].Owner.Name, p.KeyContacts[0].Phone = over, over, over, over
			},
			want: []string{
				"care_plan.coordinator.email", "care_plan.goals[0].owner.name",
				"care_plan.key_contacts[0].phone", "care_plan.person.given_name",
			},
		},
		{
			name: "free text at limit",
			mutate: func(p *careplanv1.CarePlan) {
				p.WhatMatters, p.Goals[0].Description, p.Activities[0].Schedule, p.Team[0].Responsibility = text, text, text, text
			},
		},
		{
			name: "free text over limit",
			mutate: func(p *careplanv1.CarePlan) {
				over := text + "é"
				p.WhatMatters, p.Goals[0].Description, p.Activities[0].Schedule, p.Team[0].Responsibility = over, over, over, over
			},
			want: []string{
				"care_plan.activities[0].schedule", "care_plan.goals[0].description",
				"care_plan.team[0].responsibility", "care_plan.what_matters",
			},
		},
		{name: "ids at limit", mutate: func(p *careplanv1.CarePlan) { p.Goals[0].Id, p.Activities[0].Id = id64, id64 }},
		{
			name:   "ids over limit",
			mutate: func(p *careplanv1.CarePlan) { p.Goals[0].Id, p.Activities[0].Id = id64+"x", id64+"x" },
			want:   []string{"care_plan.activities[0].id", "care_plan.goals[0].id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p *careplanv1.CarePlan
			if tt.mutate != nil {
				p = validPlan()
				tt.mutate(p)
			}
			var got []string
			for _, v := range l.CarePlan(p, "care_plan") {
				got = append(got, v.Field)
				if v.Description == "" {
					t.Errorf("%s: empty description", v.Field)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("violations on %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCarePlanPrefix(t *testing.T) {
	p := validPlan()
	p.Status = 0
	v := validate.DefaultLimits().CarePlan(p, "")
	if len(v) != 1 || v[0].Field != "status" {
		t.Errorf("with no prefix got %v, want one violation on status", v)
	}
}

func TestCarePlanNormalises(t *testing.T) {
	p := validPlan()
	p.NhsNumber = "943 476 5919"
	p.Coordinator.Organisation.OdsCode = "rxa"
	p.Team[0].Professional.Organisation.OdsCode = "c123"
	p.Goals[0].Owner.OdsCode = "rxa"
	p.Activities[0].Provider.OdsCode = "c123"
	if v := validate.DefaultLimits().CarePlan(p, "care_plan"); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
	if !proto.Equal(p, validPlan()) {
		t.Errorf("not normalised:\n got %v\nwant %v", p, validPlan())
	}
}

func TestCarePlanMessagesHoldNoPatientData(t *testing.T) {
	p := validPlan()
	p.NhsNumber = "9434765918"
	p.Person.GivenName = strings.Repeat("Ada", 100)
	for _, v := range validate.DefaultLimits().CarePlan(p, "care_plan") {
		if strings.Contains(v.Description, "943476591") || strings.Contains(v.Description, "Ada") {
			t.Errorf("%s: description %q holds patient data", v.Field, v.Description)
		}
	}
}
