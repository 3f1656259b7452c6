package eventlog

import "bytes"

// encodeRecord returns one event's unsealed value, as encodeEvents builds
// it, for tests that seal and decode single records.
func encodeRecord(e *Event) []byte {
	x := encoders.Get().(*encoder)
	defer encoders.Put(x)
	x.buf.Reset()
	x.append(e)
	return bytes.Clone(x.buf.Bytes())
}
