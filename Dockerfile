# podroute's image for users: `docker build -t <registry>/podroute:<tag> .`
#
# The final stage is what the lab builds offline (tests/scripts/lab-images.sh) and runs in its
# cluster mode: nothing but the two static binaries in /usr/local/bin, the agent as entrypoint.
# Keep the two in step: same paths, same entrypoint, no other files. (The lab cannot build this
# file itself: it has no registry to pull the build stage's base image from.)

# Build stage: glibc linked statically (crt-static), so the final image needs no libraries;
# the CNI plugin without position independence (see tests/scripts/static-bins.sh).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN export RUSTFLAGS="-C target-feature=+crt-static" \
 && cargo build --release --locked --target x86_64-unknown-linux-gnu -p podroute-agent --bins \
 && cargo rustc --release --locked --target x86_64-unknown-linux-gnu -p podroute-cni --bin podroute \
      -- -C relocation-model=static \
 && strip target/x86_64-unknown-linux-gnu/release/podroute-agent target/x86_64-unknown-linux-gnu/release/podroute

# Final stage: scratch. The agent runs as root: it needs NET_ADMIN in the host's network
# namespace (kernel routes, TCP-MD5) and Kubernetes grants added capabilities to root only.
FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/podroute-agent /usr/local/bin/podroute-agent
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/podroute /usr/local/bin/podroute
ENTRYPOINT ["/usr/local/bin/podroute-agent"]
