"""digits-app ClientApp: local SGD on this node's partition of the digits data."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from digits_app import task

app = ClientApp()


def _partition(context: Context):
    """This SuperNode's data, chosen by its node config (`--node-config`)."""
    return task.load_partition(
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model locally and send the update back."""
    params = msg.content["arrays"].to_numpy_ndarrays()
    config = msg.content["config"]
    x_train, y_train, _, _ = _partition(context)

    new_params, train_loss = task.train(
        params,
        x_train,
        y_train,
        epochs=int(context.run_config["local-epochs"]),
        batch_size=int(context.run_config["batch-size"]),
        learning_rate=float(config["lr"]),
        # Different shuffling per node and round, yet reproducible.
        seed=int(context.node_config["partition-id"]) * 1000
        + int(config["server-round"]),
    )

    content = RecordDict(
        {
            "arrays": ArrayRecord(new_params),
            "metrics": MetricRecord(
                {"train_loss": train_loss, "num-examples": len(x_train)}
            ),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this node's validation slice."""
    params = msg.content["arrays"].to_numpy_ndarrays()
    _, _, x_val, y_val = _partition(context)

    eval_loss, eval_acc = task.evaluate(params, x_val, y_val)

    content = RecordDict(
        {
            "metrics": MetricRecord(
                {"eval_loss": eval_loss, "eval_acc": eval_acc, "num-examples": len(x_val)}
            )
        }
    )
    return Message(content=content, reply_to=msg)
