# Varnish for `deproxy conformance --proxy varnish`: Varnish's built-in VCL, the origin as
# its only backend.
vcl 4.1;

backend origin {
    .host = "127.0.0.1";
    .port = "@ORIGIN_PORT@";
}
