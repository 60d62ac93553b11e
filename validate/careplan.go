package validate

import (
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// CarePlan checks every client-settable field of a full plan and returns all
// violations, with field paths under prefix (for a request, "care_plan").
//
// It also normalises p in place: the NHS number loses its spaces and ODS
// codes are uppercased, so that what is stored, indexed and compared by the
// access policy has one spelling. Server-set fields (version, etag,
// create_time, update_time, created_by, updated_by) are not checked: the
// server overwrites them.
func (l Limits) CarePlan(p *careplanv1.CarePlan, prefix string) []FieldViolation {
	c := &checker{l: l}
	c.carePlan(prefix, p)
	return c.v
}

func (c *checker) carePlan(prefix string, p *careplanv1.CarePlan) {
	if p == nil {
		c.add(prefix, "required")
		return
	}
	field := func(name string) string { return join(prefix, name) }

	if n, err := NHSNumber(p.GetNhsNumber()); err != nil {
		c.add(field("nhs_number"), err.Error())
	} else {
		p.NhsNumber = n
	}
	c.person(field("person"), p.GetPerson())
	c.enum(field("status"), p.GetStatus(), true)
	switch {
	case p.GetCoordinator() != nil:
		c.professional(field("coordinator"), p.GetCoordinator())
	case p.GetStatus() != careplanv1.CarePlan_STATUS_DRAFT:
		c.add(field("coordinator"), "required unless status is STATUS_DRAFT")
	}

	if team := p.GetTeam(); c.count(field("team"), len(team), c.l.MaxTeam) {
		for i, m := range team {
			c.teamMember(index(field("team"), i), m)
		}
	}
	if goals := p.GetGoals(); c.count(field("goals"), len(goals), c.l.MaxGoals) {
		seen := map[string]string{}
		for i, g := range goals {
			c.goal(index(field("goals"), i), g, seen)
		}
	}
	if acts := p.GetActivities(); c.count(field("activities"), len(acts), c.l.MaxActivities) {
		seen := map[string]string{}
		for i, a := range acts {
			c.activity(index(field("activities"), i), a, seen)
		}
	}

	c.text(field("what_matters"), p.GetWhatMatters())
	c.enum(field("preferred_place_of_care"), p.GetPreferredPlaceOfCare(), false)
	if kcs := p.GetKeyContacts(); c.count(field("key_contacts"), len(kcs), c.l.MaxKeyContacts) {
		for i, k := range kcs {
			c.keyContact(index(field("key_contacts"), i), k)
		}
	}
	c.date(field("next_review_date"), p.GetNextReviewDate())
}

func (c *checker) person(field string, p *careplanv1.Person) {
	if p == nil {
		c.add(field, "required")
		return
	}
	c.required(join(field, "given_name"), p.GetGivenName(), c.l.MaxShortString)
	c.required(join(field, "family_name"), p.GetFamilyName(), c.l.MaxShortString)
	birth := join(field, "birth_date")
	switch bd := p.GetBirthDate(); {
	case bd == "":
		c.add(birth, "required")
	case c.date(birth, bd) && bd > latestToday():
		c.add(birth, "must not be in the future")
	}
}

func (c *checker) teamMember(field string, m *careplanv1.TeamMember) {
	c.professional(join(field, "professional"), m.GetProfessional())
	c.text(join(field, "responsibility"), m.GetResponsibility())
	c.dateRange(field, m.GetStartDate(), m.GetEndDate())
}

func (c *checker) goal(field string, g *careplanv1.Goal, seen map[string]string) {
	c.id(join(field, "id"), g.GetId(), seen)
	c.required(join(field, "description"), g.GetDescription(), c.l.MaxFreeText)
	c.enum(join(field, "status"), g.GetStatus(), true)
	c.date(join(field, "target_date"), g.GetTargetDate())
	c.organisation(join(field, "owner"), g.GetOwner())
}

func (c *checker) activity(field string, a *careplanv1.Activity, seen map[string]string) {
	c.id(join(field, "id"), a.GetId(), seen)
	c.required(join(field, "description"), a.GetDescription(), c.l.MaxFreeText)
	c.enum(join(field, "status"), a.GetStatus(), true)
	c.text(join(field, "schedule"), a.GetSchedule())
	c.dateRange(field, a.GetStartDate(), a.GetEndDate())
	c.enum(join(field, "kind"), a.GetKind(), true)
	c.organisation(join(field, "provider"), a.GetProvider())
	c.enum(join(field, "funding"), a.GetFunding(), true)
}

func (c *checker) keyContact(field string, k *careplanv1.KeyContact) {
	c.required(join(field, "name"), k.GetName(), c.l.MaxShortString)
	c.short(join(field, "relationship"), k.GetRelationship())
	c.short(join(field, "phone"), k.GetPhone())
}
