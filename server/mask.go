package server

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/validate"
)

// notUpdatable are top-level fields a mask may not name: the key, and the
// fields only the server sets.
var notUpdatable = map[string]string{
	"nhs_number":  "the NHS number identifies the plan and cannot change",
	"version":     "set by the server",
	"etag":        "set by the server; send it in care_plan.etag",
	"create_time": "set by the server",
	"update_time": "set by the server",
	"created_by":  "set by the server",
	"updated_by":  "set by the server",
}

// checkMask validates update_mask paths (AIP-134, AIP-161): each must name a
// CarePlan field, through singular messages only; "*" must stand alone.
func checkMask(paths []string) []validate.FieldViolation {
	var vs []validate.FieldViolation
	for i, path := range paths {
		field := fmt.Sprintf("update_mask.paths[%d]", i)
		if path == "*" {
			if len(paths) != 1 {
				vs = append(vs, validate.FieldViolation{Field: field, Description: `"*" must be the only path`})
			}
			continue
		}
		if _, err := fieldmaskpb.New(&careplanv1.CarePlan{}, path); err != nil {
			vs = append(vs, validate.FieldViolation{Field: field, Description: "unknown field path for CarePlan"})
			continue
		}
		if why, ok := notUpdatable[strings.SplitN(path, ".", 2)[0]]; ok {
			vs = append(vs, validate.FieldViolation{Field: field, Description: "cannot be updated: " + why})
		}
	}
	return vs
}

// applyMask returns cur with the masked fields taken from req. With no mask
// the implied mask is every populated top-level field of req (AIP-134);
// "*" replaces every updatable field.
func applyMask(cur, req *careplanv1.CarePlan, paths []string) *careplanv1.CarePlan {
	next := proto.Clone(cur).(*careplanv1.CarePlan)
	if len(paths) == 0 {
		paths = populatedFields(req)
	}
	if len(paths) == 1 && paths[0] == "*" {
		paths = nil
		fields := next.ProtoReflect().Descriptor().Fields()
		for i := range fields.Len() {
			if name := string(fields.Get(i).Name()); notUpdatable[name] == "" {
				paths = append(paths, name)
			}
		}
	}
	for _, path := range paths {
		copyPath(next.ProtoReflect(), req.ProtoReflect(), strings.Split(path, "."))
	}
	// Clone so that the result shares no lists with the request.
	return proto.Clone(next).(*careplanv1.CarePlan)
}

func populatedFields(p *careplanv1.CarePlan) []string {
	var paths []string
	p.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if name := string(fd.Name()); notUpdatable[name] == "" {
			paths = append(paths, name)
		}
		return true
	})
	return paths
}

// copyPath sets the field at path in dst to its value in src, or clears it
// when src does not have it. Paths were checked by checkMask.
func copyPath(dst, src protoreflect.Message, path []string) {
	fd := dst.Descriptor().Fields().ByName(protoreflect.Name(path[0]))
	if len(path) > 1 {
		copyPath(dst.Mutable(fd).Message(), src.Get(fd).Message(), path[1:])
		return
	}
	if src.Has(fd) {
		dst.Set(fd, src.Get(fd))
	} else {
		dst.Clear(fd)
	}
}

// sameContent reports whether two plans differ only in server-set fields.
func sameContent(a, b *careplanv1.CarePlan) bool {
	return proto.Equal(clientFields(a), clientFields(b))
}

// clientFields returns a copy of p without the server-set fields.
func clientFields(p *careplanv1.CarePlan) *careplanv1.CarePlan {
	c := proto.Clone(p).(*careplanv1.CarePlan)
	c.Version, c.Etag = 0, ""
	c.CreateTime, c.UpdateTime, c.CreatedBy, c.UpdatedBy = nil, nil, nil, nil
	return c
}
