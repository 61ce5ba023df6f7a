# Tessera's container image, for builders that pull base images (docker, podman, buildah
# with registry access). Without registry access, scripts/image.sh builds the same layout
# from scratch with buildah.
#
#   docker build -t tessera:0.1.0 .
#   docker run --rm -p 8080:8080 -v /etc/tessera:/etc/tessera:ro tessera:0.1.0
#
# The broker reads /etc/tessera/broker.yaml and writes keys and the audit store under
# /var/lib/tessera (set `issuer.key_dir` and `data_dir` there, or mount a volume).

# The minimum supported Rust version (Cargo.toml, rust-version) or newer.
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
ARG TESSERA_BUILD_COMMIT=unknown
ENV TESSERA_BUILD_COMMIT=${TESSERA_BUILD_COMMIT}
RUN cargo build --release --locked -p tessera-broker --bin tessera \
 && install -D -m 0755 target/release/tessera /out/usr/local/bin/tessera \
 && install -d -o 65532 -g 65532 /out/var/lib/tessera

# glibc, libgcc and CA certificates, a nonroot user (65532) and no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
USER 65532:65532
WORKDIR /var/lib/tessera
VOLUME /var/lib/tessera
EXPOSE 8080 8090 9464
ENTRYPOINT ["/usr/local/bin/tessera"]
CMD ["serve", "--config", "/etc/tessera/broker.yaml"]
