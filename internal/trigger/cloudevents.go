package trigger

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// CloudEvents media types: one event in structured mode, and a batch.
const (
	ContentTypeEvent = "application/cloudevents+json"
	ContentTypeBatch = "application/cloudevents-batch+json"
)

// SpecVersion is the CloudEvents version Nimbus writes.
const SpecVersion = "1.0"

// contextAttributes are the CloudEvents attribute names an extension must
// not take.
var contextAttributes = []string{"specversion", "id", "source", "type", "subject", "time",
	"datacontenttype", "dataschema", "data", "database64"}

// EncodeEvent returns msg as one CloudEvents 1.0 JSON object (structured
// mode). Attributes come in a fixed order (specversion, id, source, type,
// subject, time, datacontenttype, the extensions sorted by name, then data
// or data_base64), so equal messages encode to equal bytes.
//
// Data is written as JSON when DataContentType is a JSON type (or empty) and
// Data is valid JSON, as a string for valid UTF-8 text/* data, and as
// data_base64 otherwise. Extension names are lowercased and stripped of
// anything but a-z and 0-9; values are written as CloudEvents types (strings,
// booleans, integers within 32 bits; larger integers, floats, times and
// bytes become strings).
func EncodeEvent(msg Message) []byte {
	var b bytes.Buffer
	writeEvent(&b, msg)
	return b.Bytes()
}

// EncodeBatch returns msgs as a JSON array of CloudEvents (the
// application/cloudevents-batch+json format).
func EncodeBatch(msgs []Message) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		writeEvent(&b, m)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func writeEvent(b *bytes.Buffer, m Message) {
	ct, dataKey, data := dataField(m.DataContentType, m.Data)
	b.WriteString(`{"specversion":"` + SpecVersion + `"`)
	writeAttr(b, "id", m.ID)
	writeAttr(b, "source", m.Source)
	writeAttr(b, "type", m.Type)
	if m.Subject != "" {
		writeAttr(b, "subject", m.Subject)
	}
	if !m.Time.IsZero() {
		writeAttr(b, "time", m.Time.UTC().Format(time.RFC3339Nano))
	}
	if ct != "" {
		writeAttr(b, "datacontenttype", ct)
	}
	writeExtensions(b, m.Extensions)
	if dataKey != "" {
		b.WriteString(`,"` + dataKey + `":`)
		b.Write(data)
	}
	b.WriteByte('}')
}

func writeAttr(b *bytes.Buffer, name string, v any) {
	raw, err := json.Marshal(v)
	if err != nil { // only strings, numbers and booleans get here
		raw = []byte(`null`)
	}
	b.WriteString(`,"` + name + `":`)
	b.Write(raw)
}

func writeExtensions(b *bytes.Buffer, ext map[string]any) {
	if len(ext) == 0 {
		return
	}
	clean := make(map[string]any, len(ext))
	for k, v := range ext {
		name := extensionName(k)
		if name == "" || slices.Contains(contextAttributes, name) {
			continue
		}
		if val, ok := extensionValue(v); ok {
			clean[name] = val
		}
	}
	names := make([]string, 0, len(clean))
	for k := range clean {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		writeAttr(b, k, clean[k])
	}
}

// extensionName keeps the lowercased ASCII letters and digits of k.
func extensionName(k string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(k) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// extensionValue converts v to a CloudEvents type: string, boolean or 32-bit
// integer. ok is false for nil.
func extensionValue(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case string, bool:
		return x, true
	case int:
		return intValue(int64(x)), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return intValue(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return intValue(int64(x)), true
	case uint:
		return uintValue(uint64(x)), true
	case uint64:
		return uintValue(x), true
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), true
	case []byte:
		return base64.StdEncoding.EncodeToString(x), true
	case fmt.Stringer:
		return x.String(), true
	}
	return fmt.Sprint(v), true
}

// intValue is n as a CloudEvents Integer when it fits in 32 bits, else as a
// decimal string (e.g. a Kafka offset).
func intValue(n int64) any {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		return n
	}
	return strconv.FormatInt(n, 10)
}

func uintValue(n uint64) any {
	if n <= math.MaxInt32 {
		return int64(n)
	}
	return strconv.FormatUint(n, 10)
}

// dataField decides how data is carried: its content type (filled in when
// empty), the member name ("data", "data_base64", or "" for no data) and the
// member's JSON value.
func dataField(ct string, data []byte) (string, string, []byte) {
	if len(data) == 0 {
		return ct, "", nil
	}
	if (ct == "" || isJSONType(ct)) && json.Valid(data) {
		if ct == "" {
			ct = "application/json"
		}
		return ct, "data", data
	}
	if isTextType(ct) && utf8.Valid(data) {
		raw, _ := json.Marshal(string(data))
		return ct, "data", raw
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	raw, _ := json.Marshal(base64.StdEncoding.EncodeToString(data))
	return ct, "data_base64", raw
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(ct))
	}
	return mt
}

func isJSONType(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

func isTextType(ct string) bool { return strings.HasPrefix(mediaType(ct), "text/") }
