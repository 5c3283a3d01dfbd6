// The uploadwatch client of the page: Connect-ES over gRPC-Web to the server
// that served the page, and the wording of its errors for a person.
import { createClient, Code, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { UploadingService } from "../gen/metrika/offline_conversions/v1/uploading_service_pb.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";

// A client of the page's own origin; `token` ("" for the server's own) goes
// in `authorization` as on native gRPC.
export function uploadingClient(token) {
  const interceptors = [];
  if (token) {
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `OAuth ${token}`);
      return next(req);
    });
  }
  return createClient(
    UploadingService,
    createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors }),
  );
}

// Errors that end a watch for good (retrying cannot help) versus those the
// page rides out by reconnecting.
export function isPermanent(err) {
  const code = ConnectError.from(err).code;
  return [Code.PermissionDenied, Code.NotFound, Code.Unauthenticated,
          Code.InvalidArgument, Code.Unimplemented].includes(code);
}

// The server's suggested retry delay in ms, if it sent one.
export function retryDelayMs(err) {
  const [info] = ConnectError.from(err).findDetails(RetryInfoSchema);
  if (!info || !info.retryDelay) return undefined;
  return Number(info.retryDelay.seconds) * 1000 + Math.round(info.retryDelay.nanos / 1e6);
}

// What to tell a person, in words they can act on.
export function explain(err, counter) {
  const e = ConnectError.from(err);
  const [info] = e.findDetails(ErrorInfoSchema);
  const reason = info ? ` (Metrica says: ${info.reason})` : "";
  switch (e.code) {
    case Code.PermissionDenied:
      return `This token has no access to counter ${counter}. Enter a token of a user who can see the counter, or ask its owner to grant access.${reason}`;
    case Code.NotFound:
      return `There is no counter ${counter} in Metrica. Check the number.${reason}`;
    case Code.Unauthenticated:
      return `Metrica did not accept the token, or the server has none. Enter a valid OAuth token above.${reason}`;
    case Code.InvalidArgument:
      return `That request is not valid: ${e.rawMessage}`;
    case Code.ResourceExhausted:
      return `Metrica's request quota is spent for now; the page keeps trying.${reason}`;
    case Code.Unavailable:
      return `Metrica (or the uploadwatch server) is not answering right now; the page keeps trying.${reason}`;
    case Code.DeadlineExceeded:
      return "Metrica took too long to answer; the page keeps trying.";
    case Code.Unimplemented:
      return `This uploadwatch server does not offer that call: ${e.rawMessage}`;
    default:
      return `Cannot reach the uploadwatch server (${Code[e.code]}: ${e.rawMessage}); the page keeps trying.`;
  }
}

export { Code, ConnectError };
