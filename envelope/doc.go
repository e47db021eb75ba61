// Package envelope holds the rules of envelope.v1.ProcessedEnvelope that every Ponix adapter
// shares, in one place:
//
//   - reading the protobuf wire format without decoding into a message ([Wire.Parse]): the
//     ids and timestamps are read in place and nothing is allocated;
//   - validation ([Validate] for a decoded envelope, [ValidateWire] for its bytes, with the
//     same rules and the same [*ValidationError]);
//   - the NATS subject of an envelope ([Subject], [ValidSubjectToken]) and its default
//     de-duplication id ([MsgID]);
//   - the JSON of its data field ([DataJSON]), from a decoded Struct or from its wire bytes,
//     byte for byte what encoding/json makes of Struct.AsMap.
//
// ponixnats (the NATS producer and processors) and ponixclickhouse (the row encoder) use it;
// neither parses the wire format itself.
package envelope
