# cardpulse pipeline image; see docker-compose.yml for Kafka, Redis and ClickHouse.
FROM node:20-bookworm-slim

WORKDIR /app
RUN chown node:node /app
USER node

# Dependencies first, so editing the code does not re-run the install. Dev dependencies are
# kept on purpose: bin/cardpulse.js runs the TypeScript sources through tsx.
COPY --chown=node:node package.json package-lock.json ./
# npm ci rejects a lock file that lacks other platforms' optional packages (it happens when the
# lock was written against a registry mirror that does not carry them); npm install then
# installs the same locked versions. .ci/run is the place where lock drift fails the build.
RUN npm ci --no-audit --no-fund || npm install --no-audit --no-fund

COPY --chown=node:node . .
RUN npm run build --if-present

ENV HTTP_PORT=8080
EXPOSE 8080
# --no: never fetch an unrelated "cardpulse" package from the registry if the bin is missing.
CMD ["npx", "--no", "cardpulse", "run"]
