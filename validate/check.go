package validate

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// checker collects violations. Each helper checks one kind of value, so that
// a rule such as "an organisation is a valid ODS code plus a type" is written
// once and every message that holds an organisation gets the same check.
type checker struct {
	l Limits
	v []FieldViolation
}

func (c *checker) add(field, desc string) {
	c.v = append(c.v, FieldViolation{Field: field, Description: desc})
}

// join builds a field path; an empty prefix gives a bare field name.
func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// index builds the path of element i of a repeated field.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// length reports s when it has more than max characters, and says whether
// it was within bounds.
func (c *checker) length(field, s string, max int) bool {
	if utf8.RuneCountInString(s) > max {
		c.add(field, fmt.Sprintf("must be at most %d characters", max))
		return false
	}
	return true
}

func (c *checker) short(field, s string) { c.length(field, s, c.l.MaxShortString) }

func (c *checker) text(field, s string) { c.length(field, s, c.l.MaxFreeText) }

// required reports an empty or blank s, then bounds its length by max.
func (c *checker) required(field, s string, max int) {
	if strings.TrimSpace(s) == "" {
		c.add(field, "required")
		return
	}
	c.length(field, s, max)
}

// date checks an optional date and reports whether it is set and valid.
func (c *checker) date(field, s string) bool {
	if s == "" {
		return false
	}
	if err := Date(s); err != nil {
		c.add(field, err.Error())
		return false
	}
	return true
}

// dateRange checks the optional start_date and end_date under prefix, and
// that the end is not before the start. YYYY-MM-DD strings compare in date
// order, so no parsing is needed for the comparison.
func (c *checker) dateRange(prefix, start, end string) {
	startOK := c.date(join(prefix, "start_date"), start)
	endOK := c.date(join(prefix, "end_date"), end)
	if startOK && endOK && end < start {
		c.add(join(prefix, "end_date"), "must not be before start_date")
	}
}

// enum checks that e is a value its enum declares, read from the descriptor
// so that a value added to the proto is accepted without touching this code.
// When required, the zero (*_UNSPECIFIED) value is a violation too.
func (c *checker) enum(field string, e protoreflect.Enum, required bool) {
	n := e.Number()
	switch {
	case n == 0 && required:
		c.add(field, "required")
	case e.Descriptor().Values().ByNumber(n) == nil:
		c.add(field, fmt.Sprintf("unknown value %d", n))
	}
}

// count reports a repeated field with more than max elements, and says
// whether its elements should be checked. Elements of an over-long list are
// not: the list must shrink anyway, and checking every element of a list
// that fills a 1 MiB request could yield an error too large to send.
func (c *checker) count(field string, n, max int) bool {
	if n > max {
		c.add(field, fmt.Sprintf("must have at most %d entries", max))
		return false
	}
	return true
}

// id checks a goal or activity id: empty is allowed (the server assigns
// one), otherwise at most MaxIDLength characters and not already in seen,
// which maps each id to the path of its first use.
func (c *checker) id(field, id string, seen map[string]string) {
	if id == "" || !c.length(field, id, MaxIDLength) {
		return
	}
	if first, dup := seen[id]; dup {
		c.add(field, "duplicates "+first)
		return
	}
	seen[id] = field
}

// organisation checks a required organisation and uppercases its ODS code
// in place.
func (c *checker) organisation(field string, o *careplanv1.Organisation) {
	if o == nil {
		c.add(field, "required")
		return
	}
	if code, err := ODSCode(o.GetOdsCode()); err != nil {
		c.add(join(field, "ods_code"), err.Error())
	} else {
		o.OdsCode = code
	}
	c.enum(join(field, "type"), o.GetType(), true)
	c.short(join(field, "name"), o.GetName())
}

// professional checks a required professional.
func (c *checker) professional(field string, p *careplanv1.Professional) {
	if p == nil {
		c.add(field, "required")
		return
	}
	c.required(join(field, "id"), p.GetId(), c.l.MaxShortString)
	c.required(join(field, "name"), p.GetName(), c.l.MaxShortString)
	c.short(join(field, "role"), p.GetRole())
	c.organisation(join(field, "organisation"), p.GetOrganisation())
	c.short(join(field, "phone"), p.GetPhone())
	c.short(join(field, "email"), p.GetEmail())
}
