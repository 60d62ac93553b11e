package policy

import (
	"errors"
	"strings"
)

// ErrDenied is matched by errors.Is on every *DeniedError, so the server can
// map any denial to PERMISSION_DENIED in its one error table.
var ErrDenied = errors.New("permission denied")

// Reasons a DeniedError carries, for the ErrorInfo reason.
const (
	// ReasonMissingRole: the token lacks the role the operation needs.
	ReasonMissingRole = "MISSING_ROLE"
	// ReasonNotRelated: the caller's organisation is not named in the plan
	// (coordinator, team or activity provider).
	ReasonNotRelated = "NOT_RELATED"
	// ReasonBreakGlassReasonRequired: a break-glass read without a stated
	// reason of at least MinAccessReasonLength characters.
	ReasonBreakGlassReasonRequired = "BREAK_GLASS_REASON_REQUIRED"
	// ReasonSharingObjection: the person objected to sharing beyond the team,
	// so break-glass access is refused.
	ReasonSharingObjection = "SHARING_OBJECTION"
	// ReasonFieldNotPermitted: the write changes fields that belong to
	// another organisation. Fields lists them.
	ReasonFieldNotPermitted = "FIELD_NOT_PERMITTED"
	// ReasonFundingNotPermitted: the write sets a funding the caller's
	// organisation type may not set, and nothing else was refused.
	ReasonFundingNotPermitted = "FUNDING_NOT_PERMITTED"
	// ReasonNotNamedInPlan: a create whose coordinator and team do not
	// include the caller's organisation.
	ReasonNotNamedInPlan = "NOT_NAMED_IN_PLAN"
)

// DeniedError is a refused read or write.
type DeniedError struct {
	// Reason is one of the Reason* constants.
	Reason  string
	Message string
	// Fields are the refused field paths, e.g. "care_plan.coordinator",
	// "care_plan.goals[id=g1]" or "care_plan.activities[1].funding".
	Fields []string
}

func (e *DeniedError) Error() string {
	msg := ErrDenied.Error() + ": " + e.Message
	if len(e.Fields) > 0 {
		msg += " (" + strings.Join(e.Fields, ", ") + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

func deny(reason, message string) *DeniedError {
	return &DeniedError{Reason: reason, Message: message}
}

// MissingRole is the denial for a caller whose token lacks role, for
// operations that name no plan (lists, watches, audit).
func MissingRole(role string) *DeniedError {
	return deny(ReasonMissingRole, "this operation needs the role "+role)
}
