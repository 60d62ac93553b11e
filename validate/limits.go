package validate

// MaxIDLength bounds goal and activity ids (DESIGN.md "Data model"). It is
// part of the contract rather than a deployment setting, so it is not in
// Limits.
const MaxIDLength = 64

// Limits are the configurable bounds of DESIGN.md "Validation (C)". Lengths
// count characters (runes), not bytes, so that names in any script get the
// same allowance.
type Limits struct {
	MaxTeam        int
	MaxGoals       int
	MaxActivities  int
	MaxKeyContacts int
	// MaxShortString bounds names, codes, phone numbers and the like.
	MaxShortString int
	// MaxFreeText bounds what_matters, goal and activity descriptions, team
	// responsibilities and activity schedules.
	MaxFreeText int
	// MaxPageSize is the largest page a List call returns; larger requests
	// are clamped (AIP-158). The server applies it, not CarePlan.
	MaxPageSize int
}

// DefaultLimits returns the bounds that DESIGN.md states.
func DefaultLimits() Limits {
	return Limits{
		MaxTeam:        50,
		MaxGoals:       100,
		MaxActivities:  200,
		MaxKeyContacts: 50,
		MaxShortString: 200,
		MaxFreeText:    10000,
		MaxPageSize:    100,
	}
}
